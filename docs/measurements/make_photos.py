"""Write the ImageFolder of realistic-size JPEGs that the ImageNet-scale input-pipeline measurements use
(docs/performance.md): crops of scikit-learn's two bundled sample photos (427×640), each resized to a short side
of 375–500 px and saved at JPEG quality 90; one class per photo, every ninth image in val/.

    python docs/measurements/make_photos.py DIR [--per-photo 660]     # 1,320 files: 1,174 train, 146 val
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cnnbench.testing.photos import write_photo_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--per-photo", type=int, default=660)
    args = parser.parse_args()
    write_photo_folder(args.root, args.per_photo, is_val=lambda i: i % 9 == 8)


if __name__ == "__main__":
    main()
