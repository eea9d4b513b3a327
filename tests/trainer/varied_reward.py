"""A reward that varies between responses of a random tiny model, so training steps have real gradients."""


def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    return (sum(map(ord, solution_str)) % 7) / 6.0
