"""The values `eval` and `predict` accept for their protocol options (docs/evaluation.md), in a module that
imports nothing: cnnbench.config_schema reads them to check a command line before torch is loaded."""

CROP_CHOICES = (1, 10, 12, 50, 144)           # crops= (cnnbench.evaluation.crops defines each protocol)
MODES = ("crops", "multiscale", "dense")      # eval.mode
TWELVE = ("one_square", "four_scales")        # eval.twelve (the two readings of Inception-v4's 12 crops)
AGGREGATES = ("softmax_mean", "logit_mean")   # eval.aggregate
WEIGHTS = ("averaged", "raw")                 # eval.weights
SPLITS = ("test", "val")                      # split=
VIEWS = ("protocol", "train")                 # eval.views: the papers' protocol, or views from the training geometry

__all__ = ["AGGREGATES", "CROP_CHOICES", "MODES", "SPLITS", "TWELVE", "VIEWS", "WEIGHTS"]
