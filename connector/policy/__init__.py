"""Usage-policy decisions: one interface for every enforcement point."""

from connector.policy.decision import Decision, DecisionInput, DecisionPoint, Phase

__all__ = ["Decision", "DecisionInput", "DecisionPoint", "Phase"]
