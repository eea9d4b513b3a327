"""Tool and interaction YAMLs as verl writes them, and the rollout.multi_turn keys' checks."""

import pytest

from verl.interactions.gsm8k_interaction import Gsm8kInteraction
from verl.interactions.utils.interaction_registry import initialize_interactions_from_config
from verl.rollout.agent.parser import parse_hermes
from verl.rollout.config import rollout_config_from_mapping
from verl.tools.base_tool import BaseTool
from verl.tools.gsm8k_tool import Gsm8kTool
from verl.tools.utils.tool_registry import initialize_tools_from_config

# verl's examples/sglang_multiturn/config/tool_config/gsm8k_tool_config.yaml, as shipped
GSM8K_TOOL_YAML = """\
tools:
  - class_name: "verl.tools.gsm8k_tool.Gsm8kTool"
    config:
      type: native
    tool_schema:
      type: "function"
      function:
        name: "calc_gsm8k_reward"
        description: "A tool for calculating the reward of gsm8k. (1.0 if parsed answer is correct, 0.0 if parsed answer is incorrect or not correctly parsed)"
        parameters:
          type: "object"
          properties:
            answer:
              type: "string"
              description: "The model's answer to the GSM8K math problem, must be a digits"
          required: ["answer"]
"""


class EchoTool(BaseTool):
    """A user's tool written against verl's contract, loaded by its dotted path."""


def test_verl_tool_yaml_loads_unchanged(tmp_path):
    path = tmp_path / "tools.yaml"
    path.write_text(GSM8K_TOOL_YAML + f"""\
  - class_name: {__name__}.EchoTool
    config: {{type: native, timeout: 2}}
    tool_schema: {{type: function, function: {{name: echo, description: echo back}}}}
""")
    gsm8k, echo = initialize_tools_from_config(str(path))
    assert isinstance(gsm8k, Gsm8kTool) and gsm8k.name == "calc_gsm8k_reward"
    assert gsm8k.tool_schema.function.parameters.required == ["answer"]
    assert isinstance(echo, EchoTool) and echo.config["timeout"] == 2
    assert echo.tool_schema.function.parameters.properties == {}  # verl's default: no parameters


@pytest.mark.parametrize("body, match", [
    ("tools:\n  - class_name: no.such.Module\n", "cannot import"),
    ("tools:\n  - config: {}\n", "needs a string class_name"),
    ("tools:\n  - class_name: verl.tools.gsm8k_tool.Gsm8kTool\n    config: {type: mcp}\n", "MCP servers are not"),
    ("tools:\n  - class_name: verl.tools.gsm8k_tool.Gsm8kTool\n    tool_schema: {type: function}\n",
     "not an OpenAI function schema"),
    ("nothing: here\n", "top-level 'tools:' list"),
])
def test_bad_tool_yaml_is_named(tmp_path, body, match):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises((ValueError, ImportError), match=match):
        initialize_tools_from_config(str(path))


def test_interaction_yaml(tmp_path):
    path = tmp_path / "interaction.yaml"
    path.write_text("interaction:\n  - name: gsm8k\n    class_name: verl.interactions.gsm8k_interaction.Gsm8kInteraction\n"
                    "    config: {}\n")
    interactions = initialize_interactions_from_config(str(path))
    assert list(interactions) == ["gsm8k"] and isinstance(interactions["gsm8k"], Gsm8kInteraction)


def test_multi_turn_keys_are_checked():
    cfg = rollout_config_from_mapping({"multi_turn": {"enable": True, "max_assistant_turns": 3}})
    assert cfg.multi_turn.enable and cfg.multi_turn.max_assistant_turns == 3 and cfg.multi_turn.format == "hermes"
    with pytest.raises(KeyError, match="did you mean 'max_user_turns'"):
        rollout_config_from_mapping({"multi_turn": {"max_user_turn": 2}})
    for bad, match in (({"format": "llama3_json"}, "only \\['hermes'\\]"),
                       ({"tool_response_truncate_side": "top"}, "tool_response_truncate_side"),
                       ({"tokenization_sanity_check_mode": "loose"}, "tokenization_sanity_check_mode"),
                       ({"max_assistant_turns": 0}, "max_assistant_turns=0"),
                       ({"use_inference_chat_template": True}, "keep it false"),
                       ({"num_repeat_rollouts": 2}, "rollout.n")):
        with pytest.raises(ValueError, match=match):
            rollout_config_from_mapping({"multi_turn": bad})


def test_trainer_check_needs_raw_chat_and_existing_files(tmp_path):
    from verl.trainer.config.schema import PPOConfig
    from verl.trainer.config.validate import _check_multi_turn
    from verl.utils.config import ConfigError

    config = PPOConfig()
    config.actor_rollout_ref.rollout.multi_turn.enable = True
    with pytest.raises(ConfigError, match="data.return_raw_chat=true"):
        _check_multi_turn(config)
    config.data.return_raw_chat = True
    config.actor_rollout_ref.rollout.multi_turn.tool_config_path = str(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="multi_turn.tool_config_path=.*does not exist"):
        _check_multi_turn(config)


def test_hermes_parser():
    text, calls = parse_hermes('Let me check.\n<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>'
                               '<tool_call>{"name": "g", "arguments": "{\\"y\\": 2}"}</tool_call>')
    assert text == "Let me check." and [(c.name, c.arguments, c.error) for c in calls] == [
        ("f", {"x": 1}, None), ("g", {"y": 2}, None)]
    assert parse_hermes("no calls here") == ("no calls here", [])
    assert parse_hermes('<tool_call>{"name": "f", "arguments": [1]}</tool_call>')[1][0].error.startswith("the arguments")
    assert parse_hermes('<tool_call>["f"]</tool_call>')[1][0].error.startswith("the tool call must be")
    assert "never closed" in parse_hermes('<tool_call>{"name": "f"')[1][0].error
