"""cnnbench.overrides: one reading of Hydra's override text for the analysis, the sweep summary and the pre-check."""
from __future__ import annotations

import pytest

from cnnbench.overrides import is_deletion, override_key, split_override


@pytest.mark.parametrize(("override", "key", "value", "deletes"), [
    ("trainer.max_epochs=40", "trainer.max_epochs", "40", False),
    ("+claim.variant=plain", "claim.variant", "plain", False),
    ("++trainer.enable_progress_bar=false", "trainer.enable_progress_bar", "false", False),
    ("~model.aux_weight", "model.aux_weight", "", True),
    ("~model.aux_weight=0.3", "model.aux_weight", "0.3", True),
    ("schedule.milestones_epochs=[20,30]", "schedule.milestones_epochs", "[20,30]", False),
    ("data.root=/a=b", "data.root", "/a=b", False),  # only the first `=` splits
    ("hydra/launcher=joblib", "hydra/launcher", "joblib", False),
])
def test_split_override(override, key, value, deletes):
    assert split_override(override) == (key, value)
    assert override_key(override) == key
    assert is_deletion(override) is deletes
