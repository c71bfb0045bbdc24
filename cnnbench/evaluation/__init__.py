"""Test-time evaluation: multi-crop protocols, multi-scale and dense evaluation, ensembles."""
from cnnbench.evaluation.aggregate import AGGREGATES, aggregate_views, average
from cnnbench.evaluation.crops import CROP_CHOICES, View, protocol_views, whole_views

__all__ = ["AGGREGATES", "CROP_CHOICES", "View", "aggregate_views", "average", "protocol_views", "whole_views"]
