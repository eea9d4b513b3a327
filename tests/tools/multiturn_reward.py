"""A reward function for the multi-turn end-to-end test: it checks that the rollout's turn count and tool scores
reached it through ``extra_info`` (verl's ``num_turns`` and ``rollout_reward_scores``), and varies with the text."""


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    turns, tool_scores = extra_info.get("num_turns"), extra_info.get("rollout_reward_scores")
    reached = isinstance(turns, int) and turns >= 2 and isinstance(tool_scores, dict)
    return (1.0 if reached else -10.0) + 0.01 * (len(solution_str) % 7)
