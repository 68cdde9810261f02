"""The policy stage: rollouts, rewards, advantage estimators and the policy update."""
