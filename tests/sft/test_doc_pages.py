"""The SFT, checkpoint, model-merger and walkthrough pages run as written: their python and bash blocks, in order,
in one fresh directory (python blocks share one namespace; bash blocks run with this interpreter first on PATH)."""

import pytest

# page -> strings its blocks must print (a page that silently does nothing fails)
PAGES = {
    "docs/sft.md": [
        "steps: 6, latest checkpoint: 6",
        "checkpoint: ['extra_state_world_size_2_rank_0.pt', 'extra_state_world_size_2_rank_1.pt', 'huggingface', "
        "'model', 'optim']",
        "validation loss fell: True",
        "export generates: True",
        "trained on: '5<|im_end|>It is 24.<|im_end|>'",
    ],
    "docs/advance/model_merger.md": [
        "OK: 26 tensors of checkpoints/demo/global_step_2 match merged",
        "Qwen2ForCausalLM with 26 tensors equal to the checkpoint: True",
    ],
    "docs/advance/checkpoint_merger.md": [
        "kept: ['global_step_4', 'global_step_5']",
        "latest: 5",
        "logged steps: [1, 2, 3, 4, 5]",
    ],
    "docs/start/tools_walkthrough.md": [
        "wrote 4 rows x 4 responses to gen/test_gen.parquet",
        "test_score/openai/gsm8k/pass@4: 0.0000",
        "rows: 4 responses per row: 4",
        "metrics: ['test_score/openai/gsm8k', 'test_score/openai/gsm8k/pass@1', 'test_score/openai/gsm8k/pass@2', "
        "'test_score/openai/gsm8k/pass@4']",
    ],
}


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_runs_as_written(page, run_doc_page):
    run_doc_page(page, PAGES[page])
