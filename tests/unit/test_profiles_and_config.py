import argparse

import pytest

from gateway import config
from gateway.profiles import DEMO_PROFILE, Profile, load_profiles, narrow
from gateway.wire.client import Open
from gateway.wire.errors import ErrorCode, GatewayError


def test_narrow_defaults_to_the_profile() -> None:
    spec = narrow(DEMO_PROFILE, Open(id="o"))
    assert (spec.model, spec.permission_mode, spec.allowed_tools) == (DEMO_PROFILE.model, "default", DEMO_PROFILE.allowed_tools)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (Open(id="o", model="other"), ErrorCode.MODEL_NOT_ALLOWED),
        (Open(id="o", permission_mode="bypassPermissions"), ErrorCode.MODE_NOT_ALLOWED),
        (Open(id="o", allowed_tools=["Bash"]), ErrorCode.FORBIDDEN_OPTION),
        (Open(id="o", max_turns=DEMO_PROFILE.max_turns + 1), ErrorCode.FORBIDDEN_OPTION),
    ],
)
def test_escalations_are_refused(frame: Open, code: ErrorCode) -> None:
    with pytest.raises(GatewayError) as info:
        narrow(DEMO_PROFILE, frame)
    assert info.value.code == code


def test_profile_rejects_inconsistent_defaults() -> None:
    with pytest.raises(ValueError):
        Profile(name="p", permission_mode="bypassPermissions")


def test_load_profiles_from_toml(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "gw.toml"
    path.write_text('[profiles.readonly]\nallowed_tools = ["Read"]\npermission_modes = ["default", "plan"]\n\n[profiles.ops]\nmodels = ["claude-opus-4-1"]\nmodel = "claude-opus-4-1"\napproval_timeout_s = 30\n')
    profiles = load_profiles(path)
    assert set(profiles) == {"readonly", "ops"}
    assert profiles["ops"].approval_timeout_s == 30 and profiles["readonly"].name == "readonly"
    path.write_text('[profiles.bad]\ncwd = "/"\n')
    with pytest.raises(Exception):
        load_profiles(path)


def test_settings_precedence_flag_env_default() -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    args = parser.parse_args(["--port", "9001"])
    settings = config.load(args, {"AGENT_GATEWAY_PORT": "9000", "AGENT_GATEWAY_MAX_SESSIONS": "7", "ANTHROPIC_API_KEY": "k"})
    assert (settings.port, settings.max_sessions, settings.anthropic_api_key, settings.host) == (9001, 7, "k", "127.0.0.1")
    with pytest.raises(SystemExit):
        config.load(None, {"AGENT_GATEWAY_PORT": "eighty"})


def test_tokens_parse_and_are_checked() -> None:
    assert config.Settings(tokens="a=0123456789abcdef, b=fedcba9876543210").token_map() == {"0123456789abcdef": "a", "fedcba9876543210": "b"}
    with pytest.raises(ValueError):
        config.Settings(tokens="a=short").token_map()


def test_every_setting_is_documented() -> None:
    table = config.markdown_table()
    for field in config.Settings.__struct_fields__:
        assert f"`--{field.replace('_', '-')}`" in table and config.env_name(field) in table


def test_tickets_expire_to_the_millisecond(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import time

    from gateway.auth import Authenticator

    auth = Authenticator(config.Settings(tokens="a=0123456789abcdef", ticket_ttl_s=60.0))
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)
    ticket, expires = auth.issue_ticket("a")
    assert expires == int((now + 60.0) * 1000)
    monkeypatch.setattr(time, "time", lambda: now + 59.99)
    assert auth.principal_for_ticket(ticket) == "a"
    monkeypatch.setattr(time, "time", lambda: now + 60.01)
    assert auth.principal_for_ticket(ticket) is None
    assert auth.principal_for_ticket(ticket[:-2] + "xx") is None


def _update(kind: str, **fields):  # type: ignore[no-untyped-def]
    from claude_agent_sdk.types import PermissionRuleValue, PermissionUpdate

    rules = [PermissionRuleValue(tool_name=t, rule_content=c) for t, c in fields.pop("rules", [])]
    return PermissionUpdate(type=kind, rules=rules or None, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("update", [
    _update("replaceRules", rules=[("Bash", None)], behavior="allow"),
    _update("removeRules", rules=[("Bash", "rm *")], behavior="deny"),
    _update("setMode", mode="acceptEdits"),
    _update("addDirectories", directories=["/"]),
    _update("removeDirectories", directories=["/tmp"]),
])
def test_only_add_rules_suggestions_are_applied_by_default(update) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GatewayError) as refused:
        DEMO_PROFILE.check_update(update, "Bash")
    assert refused.value.code == ErrorCode.SUGGESTION_NOT_ALLOWED and update.type in refused.value.message
    DEMO_PROFILE.check_update(_update("addRules", rules=[("Bash", "npm test")], behavior="allow"), "Bash")


def test_a_rule_suggestion_may_name_only_the_tool_being_answered() -> None:
    every = Profile(name="every", permission_updates=["addRules", "replaceRules", "removeRules"])
    for kind in ("addRules", "replaceRules", "removeRules"):
        with pytest.raises(GatewayError) as refused:
            every.check_update(_update(kind, rules=[("Bash", "ls"), ("Write", None)], behavior="allow"), "Bash")
        assert refused.value.code == ErrorCode.SUGGESTION_NOT_ALLOWED and "Write" in refused.value.message
        every.check_update(_update(kind, rules=[("Bash", "ls")], behavior="allow"), "Bash")


def test_a_set_mode_suggestion_must_name_a_mode_of_the_profile() -> None:
    modes = Profile(name="modes", permission_updates=["setMode"], permission_modes=["default", "plan"])
    modes.check_update(_update("setMode", mode="plan"), "Write")
    with pytest.raises(GatewayError) as refused:
        modes.check_update(_update("setMode", mode="acceptEdits"), "Write")
    assert refused.value.code == ErrorCode.MODE_NOT_ALLOWED


def test_thinking_and_effort_may_only_narrow() -> None:
    from gateway.wire.client import Thinking

    enabled = Profile(name="t", thinking=Thinking(type="enabled", budget_tokens=4000, display="summarized"), effort="medium")
    spec = narrow(enabled, Open(id="o", thinking=Thinking(type="enabled", budget_tokens=2000, display="omitted"), effort="low"))
    assert spec.thinking == Thinking(type="enabled", budget_tokens=2000, display="omitted") and spec.effort == "low"
    assert narrow(enabled, Open(id="o")).thinking == enabled.thinking
    assert narrow(enabled, Open(id="o", thinking=Thinking(type="disabled"))).thinking == Thinking(type="disabled")
    default = Profile(name="d")  # the CLI's own defaults: thinking may only be turned off, effort lowered from high
    assert narrow(default, Open(id="o", thinking=Thinking(type="disabled"), effort="high")).effort == "high"
    wider = [
        (enabled, Open(id="o", thinking=Thinking(type="enabled", budget_tokens=4001))),
        (enabled, Open(id="o", thinking=Thinking(type="adaptive"))),
        (enabled, Open(id="o", effort="high")),
        (default, Open(id="o", thinking=Thinking(type="adaptive"))),
        (default, Open(id="o", effort="xhigh")),
        (Profile(name="a", thinking=Thinking(type="adaptive", display="omitted")), Open(id="o", thinking=Thinking(type="adaptive", display="summarized"))),
    ]
    for profile, frame in wider:
        with pytest.raises(GatewayError) as refused:
            narrow(profile, frame)
        assert refused.value.code == ErrorCode.FORBIDDEN_OPTION, frame


def test_thinking_budget_goes_with_enabled_only() -> None:
    import msgspec

    from gateway.wire.client import Thinking

    for bad in ({"type": "enabled"}, {"type": "adaptive", "budget_tokens": 2000}, {"type": "disabled", "display": "omitted"}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, Thinking)
