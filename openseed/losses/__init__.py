"""Training objective: Hungarian matching, set criterion, point sampling and O365 mask assistance (docs/official_behaviours.md §7)."""

from openseed.losses.criterion import SetCriterion
from openseed.losses.mask_assist import MaskAssistSettings
from openseed.losses.matcher import HungarianMatcher

__all__ = ["HungarianMatcher", "MaskAssistSettings", "SetCriterion"]
