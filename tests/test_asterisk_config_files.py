"""The Asterisk configuration we ship (asterisk-config/), checked against a real Asterisk 22.

Docker and Asterisk do not run here, so what Asterisk would refuse or misread must be caught
by these tests: syntax, module names, dialplan applications and jumps, PJSIP object links,
and the AMI account's privileges, using the documentation printed by the Asterisk 22.10.1 in
pbxsim/recorded/reference/ (recorded on a real Asterisk 22).
"""
from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from pathlib import Path

from typing import Optional

import pytest

from pbxsim.recorded import RECORDED
from pbxsim.asterisk_conf import AsteriskConf, Section, load_conf
from pbxsim.extensions_conf import DialplanLine, parse_dialplan

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "asterisk-config"
SHARED = RECORDED
REFERENCE = SHARED / "reference"

needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"recorded Asterisk reference not available at {REFERENCE}"
)

EXPECTED_FILES = {
    "asterisk.conf", "modules.conf", "extensions.conf", "pjsip.conf", "manager.conf",
    "musiconhold.conf", "logger.conf", "rtp.conf", "cdr.conf", "cel.conf", "features.conf",
    "indications.conf", "http.conf",
}

# AMI actions our services send (hotline/ami, acd/, cti/).
AMI_ACTIONS_USED = (
    "Redirect", "Hangup", "Originate", "Getvar", "Setvar", "Status", "CoreShowChannels",
    "MixMonitor", "StopMixMonitor", "Ping", "Events", "Login",
)
# AMI event classes our services must receive: call life cycle and the dialplan's UserEvents.
AMI_READ_NEEDED = {"call", "user"}
AMI_CLASSES = {
    "system", "call", "log", "verbose", "command", "agent", "user", "config", "dtmf",
    "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc", "test", "security",
    "message", "all", "none",
}
# Write classes that hand out the PBX: CLI commands, config files, everything.
AMI_WRITE_FORBIDDEN = {"all", "command", "config"}

# Applications not in reference/application-docs.txt: the module that provides them
# (reference/modules-loaded.txt names it by its description).
APP_MODULES_FALLBACK = {"UserEvent": "app_userevent"}

MODULES_KEYS = {"autoload", "preload", "preload-require", "load", "require", "noload"}

# Modules that open network ports we do not want open (the reference config refused them too).
MUST_NOT_LOAD = {"chan_iax2.so", "pbx_dundi.so", "chan_skinny.so", "chan_mgcp.so", "chan_unistim.so",
                 "res_xmpp.so", "res_hep.so", "res_phoneprov.so", "res_snmp.so"}

PJSIP_TYPES = {
    "global", "system", "transport", "endpoint", "aor", "auth", "identify", "acl", "registration",
    "domain_alias", "contact", "outbound-publish", "inbound-publication", "asterisk-publication",
    "resource_list", "phoneprov",
}
# Options of the object types we use, from the Asterisk 22 PJSIP documentation. res_pjsip
# rejects an object with an unknown option (the whole endpoint would be missing), so a typo
# must fail here. If Asterisk 22 documents an option that is missing here, add it.
PJSIP_OPTIONS = {
    "global": {
        "type", "user_agent", "endpoint_identifier_order", "max_forwards", "keep_alive_interval",
        "contact_expiration_check_interval", "debug", "default_from_user", "default_outbound_endpoint",
        "default_realm", "default_voicemail_extension", "disable_multi_domain", "ignore_uri_user_options",
        "max_initial_qualify_time", "mwi_disable_initial_unsolicited", "norefersub", "regcontext",
        "send_contact_status_on_update_registration", "taskprocessor_overload_trigger",
        "unidentified_request_count", "unidentified_request_period", "unidentified_request_prune_interval",
        "use_callerid_contact", "allow_sending_180_after_183", "all_codecs_on_empty_reinvite",
    },
    "system": {
        "type", "disable_tcp_switch", "timer_t1", "timer_b", "compact_headers", "disable_rport",
        "accept_multiple_sdp_answers", "follow_early_media_fork", "threadpool_auto_increment",
        "threadpool_idle_timeout", "threadpool_initial_size", "threadpool_max_size",
    },
    "transport": {
        "type", "protocol", "bind", "tos", "cos", "external_media_address", "external_signaling_address",
        "external_signaling_port", "local_net", "allow_reload", "symmetric_transport", "method",
        "cert_file", "priv_key_file", "ca_list_file", "ca_list_path", "cipher", "domain", "password",
        "require_client_cert", "verify_client", "verify_server", "async_operations",
        "websocket_write_timeout", "allow_wildcard_certs", "tcp_keepalive_enable",
        "tcp_keepalive_idle_time", "tcp_keepalive_interval_time", "tcp_keepalive_probe_count",
    },
    "acl": {"type", "acl", "deny", "permit", "contact_acl", "contact_deny", "contact_permit"},
    "endpoint": {
        "type", "transport", "context", "aors", "auth", "outbound_auth", "identify_by", "disallow",
        "allow", "dtmf_mode", "direct_media", "rtp_symmetric", "force_rport", "rewrite_contact",
        "callerid", "callerid_privacy", "callerid_tag", "trust_id_inbound", "trust_id_outbound",
        "send_pai", "send_rpid", "allow_subscribe", "device_state_busy_at", "tos_audio", "cos_audio",
        "tos_video", "cos_video", "language", "media_address", "bind_rtp_to_media_address",
        "rtp_timeout", "rtp_timeout_hold", "rtp_keepalive", "timers", "timers_min_se",
        "timers_sess_expires", "from_user", "from_domain", "mailboxes", "inband_progress",
        "send_connected_line", "trust_connected_line", "connected_line_method", "direct_media_method",
        "ice_support", "media_encryption", "webrtc", "use_avpf", "rtcp_mux", "moh_suggest",
        "moh_passthrough", "set_var", "accountcode", "100rel", "allow_transfer", "allow_overlap",
        "tone_zone", "outbound_proxy", "fax_detect", "t38_udptl", "suppress_q850_reason_headers",
        "user_eq_phone", "preferred_codec_only", "max_audio_streams", "sdp_owner", "sdp_session",
    },
    "aor": {
        "type", "contact", "max_contacts", "remove_existing", "remove_unavailable", "qualify_frequency",
        "qualify_timeout", "qualify_2xx_only", "authenticate_qualify", "default_expiration",
        "minimum_expiration", "maximum_expiration", "mailboxes", "outbound_proxy", "support_path",
        "voicemail_extension",
    },
    "auth": {
        "type", "auth_type", "username", "password", "realm", "md5_cred", "nonce_lifetime",
        "password_digest", "supported_algorithms_uac", "supported_algorithms_uas",
    },
    "identify": {"type", "endpoint", "match", "match_header", "match_request_uri", "srv_lookups"},
}
AGENT_EXTENSIONS = [str(n) for n in range(1001, 1021)]

MANAGER_USER_KEYS = {"secret", "deny", "permit", "acl", "read", "write", "writetimeout",
                     "displayconnects", "eventfilter", "allowmultiplelogin", "setvar"}


# ------------------------------------------------------------------ loading


@lru_cache(maxsize=None)
def conf(name: str) -> AsteriskConf:
    return load_conf(CONFIG / name)


@lru_cache(maxsize=None)
def dialplan() -> dict[str, list[DialplanLine]]:
    return parse_dialplan(conf("extensions.conf"))


def reference_text(name: str) -> str:
    return (REFERENCE / name).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def loaded_modules() -> set[str]:
    """Module files that the reference Asterisk had (reference/modules-loaded.txt)."""
    names = set()
    for line in reference_text("modules-loaded.txt").splitlines()[1:]:
        word = line.split(" ", 1)[0]
        if word.endswith(".so"):
            names.add(word)
    return names


@lru_cache(maxsize=None)
def reference_apps() -> set[str]:
    return set(re.findall(r"^\s*([A-Za-z][A-Za-z0-9_]*): ", reference_text("dialplan-applications.txt"), re.M))


@lru_cache(maxsize=None)
def reference_functions() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)\s", reference_text("dialplan-functions.txt"), re.M))


def provided_by(docs_file: str) -> dict[str, str]:
    """Name -> module ("builtin" for the core) from an *-docs.txt file's [Provided By] blocks."""
    result = {}
    for block in re.split(r"^=+ ", reference_text(docs_file), flags=re.M)[1:]:
        name = block.split("\n", 1)[0].strip()
        found = re.search(r"^\[Provided By\]\n(\S+)", block, re.M)
        if found:
            result[name] = found.group(1)
    return result


@lru_cache(maxsize=None)
def action_privileges() -> dict[str, set[str]]:
    """AMI action -> classes that allow it (empty: no privilege needed), from ami-action-docs.txt."""
    result = {}
    for block in re.split(r"^=+ ", reference_text("ami-action-docs.txt"), flags=re.M)[1:]:
        name = block.split("\n", 1)[0].strip()
        found = re.search(r"^\[Privilege\]\n(.+)$", block, re.M)
        assert found, f"no [Privilege] for {name}"
        value = found.group(1).strip()
        result[name] = set() if value == "<none>" else set(value.split(",")) - {"all"}
    return result


def modules_conf() -> dict[str, list[str]]:
    section = conf("modules.conf").get("modules")
    assert section is not None, "modules.conf needs a [modules] section"
    result: dict[str, list[str]] = {}
    for entry in section.entries:
        result.setdefault(entry.key.lower(), []).append(entry.value)
    return result


def pjsip_of_type(kind: str) -> list[Section]:
    return [s for s in conf("pjsip.conf") if s.get("type") == kind]


def pjsip_named(name: str, kind: str) -> Optional[Section]:
    return next((s for s in pjsip_of_type(kind) if s.name == name), None)


def csv(value: Optional[str]) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


# ------------------------------------------------------------------ every file


def test_expected_files_exist() -> None:
    present = {p.name for p in CONFIG.glob("*.conf")}
    assert EXPECTED_FILES <= present, f"missing: {sorted(EXPECTED_FILES - present)}"


@pytest.mark.parametrize("path", sorted(CONFIG.glob("*.conf")), ids=lambda p: p.name)
def test_every_file_parses(path: Path) -> None:
    parsed = load_conf(path)
    assert parsed.sections, f"{path.name} has no section"


def test_dialplan_parses() -> None:
    assert dialplan(), "extensions.conf defines no context"


# ------------------------------------------------------------------ modules


def test_modules_conf_uses_only_known_keywords() -> None:
    # Asterisk aborts start-up on any other keyword in [modules].
    assert set(modules_conf()) <= MODULES_KEYS
    assert modules_conf()["autoload"] == ["yes"]


@needs_reference
def test_every_named_module_exists() -> None:
    # A misspelt noload is silently ignored, and the module it meant to refuse loads.
    reference_noload = set(load_conf(SHARED / "config-reference" / "modules.conf").get("modules").get_all("noload"))
    for key, values in modules_conf().items():
        if key == "autoload":
            continue
        known = loaded_modules() | (reference_noload if key == "noload" else set())
        unknown = sorted(set(values) - known)
        assert not unknown, f"{key}: not modules of Asterisk 22 (reference/modules-loaded.txt): {unknown}"


def test_required_modules_are_not_noloaded() -> None:
    modules = modules_conf()
    required = set(modules.get("require", [])) | set(modules.get("preload-require", []))
    assert not required & set(modules.get("noload", []))
    assert {"chan_pjsip.so", "res_pjsip.so", "pbx_config.so", "res_agi.so"} <= required


def test_network_listeners_we_do_not_use_are_refused() -> None:
    assert MUST_NOT_LOAD <= set(modules_conf().get("noload", []))


# ------------------------------------------------------------------ dialplan


def dialplan_steps() -> list[DialplanLine]:
    return [line for lines in dialplan().values() for line in lines if line.kind == "exten"]


@needs_reference
def test_every_application_exists_and_its_module_loads() -> None:
    apps = reference_apps()
    documented = provided_by("application-docs.txt")
    noload = set(modules_conf().get("noload", []))
    for step in dialplan_steps():
        canonical = next((a for a in apps if a.lower() == step.app.lower()), None)
        assert canonical, f"{step.where}: {step.app}() is not an application of Asterisk 22"
        module = documented.get(canonical) or APP_MODULES_FALLBACK.get(canonical)
        assert module, f"{step.where}: which module provides {canonical}()? add it to APP_MODULES_FALLBACK"
        if module == "builtin":
            continue
        assert f"{module}.so" in loaded_modules(), f"{step.where}: {module}.so is not an Asterisk 22 module"
        assert f"{module}.so" not in noload, f"{step.where}: {canonical}() needs {module}.so, noloaded in modules.conf"


@needs_reference
def test_every_dialplan_function_exists_and_its_module_loads() -> None:
    functions = reference_functions()
    documented = provided_by("function-docs.txt")
    noload = set(modules_conf().get("noload", []))
    for step in dialplan_steps():
        for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\(", step.args):
            assert name.upper() in functions, f"{step.where}: {name}() is not a dialplan function of Asterisk 22"
            module = documented.get(name.upper())
            if module and module != "builtin":
                assert f"{module}.so" not in noload, f"{step.where}: {name}() needs {module}.so"


def split_top(text: str, separators: str) -> list[str]:
    """Split at separators outside (), [], {} and double quotes."""
    parts, depth, quoted, current = [], 0, False, []
    for char in text:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "([{":
            depth += 1
        elif not quoted and char in ")]}":
            depth = max(depth - 1, 0)
        elif not quoted and depth == 0 and char in separators:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def jump_targets(step: DialplanLine) -> list[str]:
    """The [[context,]exten,]priority targets of a Goto or GotoIf."""
    app = step.app.lower()
    if app == "goto":
        return [step.args]
    if app == "gotoif":
        condition_and_rest = split_top(step.args, "?")
        assert len(condition_and_rest) == 2, f"{step.where}: GotoIf without '?'"
        return [t for t in split_top(condition_and_rest[1], ":") if t.strip()]
    return []


def pattern_matches(pattern: str, exten: str) -> bool:
    if not pattern.startswith("_"):
        return pattern == exten
    regex = ""
    body = pattern[1:]
    i = 0
    while i < len(body):
        char = body[i]
        if char.upper() in "XZN":
            regex += {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]"}[char.upper()]
        elif char == "[":
            end = body.index("]", i)
            regex += "[" + body[i + 1:end].replace("\\", "\\\\") + "]"
            i = end
        elif char == ".":
            regex += ".+"
        elif char == "!":
            regex += ".*"
        else:
            regex += re.escape(char)
        i += 1
    return re.fullmatch(regex, exten) is not None


def steps_for(context: str, exten: str) -> list[DialplanLine]:
    """The steps of the extension Asterisk would pick: exact name first, then patterns."""
    lines = [l for l in dialplan().get(context, []) if l.kind == "exten"]
    exact = [l for l in lines if l.exten == exten]
    if exact:
        return exact
    for pattern in dict.fromkeys(l.exten for l in lines if l.exten.startswith("_")):
        if pattern_matches(pattern, exten):
            return [l for l in lines if l.exten == pattern]
    return []


def test_every_jump_lands_on_an_existing_step() -> None:
    checked = 0
    for step in dialplan_steps():
        for target in jump_targets(step):
            parts = [p.strip() for p in split_top(target, ",")]
            assert 1 <= len(parts) <= 3, f"{step.where}: bad jump target {target!r}"
            if len(parts) == 1:
                context, exten, priority = step.context, step.exten, parts[0]
            elif len(parts) == 2:
                context, exten, priority = step.context, parts[0], parts[1]
            else:
                context, exten, priority = parts
            if "$" in context:
                continue
            assert context in dialplan(), f"{step.where}: jumps to context '{context}', which does not exist"
            if "$" in exten or "$" in priority:
                continue
            steps = steps_for(context, exten)
            assert steps, f"{step.where}: jumps to {context},{exten}: no such extension"
            if priority.isdigit():
                assert int(priority) in {s.priority for s in steps}, f"{step.where}: no priority {target}"
            else:
                assert priority in {s.label for s in steps}, f"{step.where}: no label '{priority}' in {context},{exten}"
            checked += 1
    assert checked, "no Goto/GotoIf found: the check did not run"


def test_every_included_context_exists() -> None:
    for lines in dialplan().values():
        for line in lines:
            if line.kind == "include":
                assert line.target in dialplan(), f"{line.where}: includes '{line.target}', which does not exist"


def test_call_path_contract_of_the_architecture() -> None:
    # docs/ARCHITECTURE.md "A call's path": the entry points the carrier, the IVR fallback
    # and the ACD's Redirect rely on.
    for context, exten in [("from-trunk", "12345"), ("from-trunk", "123451"),
                           ("hotline-inbound", "s"), ("hotline-wait", "s")]:
        assert any(s.priority == 1 for s in steps_for(context, exten)), f"{context},{exten},1 missing"
    for agent in AGENT_EXTENSIONS:
        first = [s for s in steps_for("hotline-connect", agent) if s.priority == 1]
        assert first, f"the ACD's Redirect to hotline-connect,{agent},1 would find no extension"
    dials = [s for s in dialplan_steps() if s.context == "hotline-connect" and s.app == "Dial"]
    assert dials and all(s.args.startswith("PJSIP/${EXTEN}") for s in dials)


# ------------------------------------------------------------------ pjsip.conf


def test_pjsip_every_section_has_a_known_type() -> None:
    for section in conf("pjsip.conf"):
        kind = section.get("type")
        assert kind in PJSIP_TYPES, f"{section.where}: [{section.name}] has type {kind!r}"


def test_pjsip_options_are_known_for_their_type() -> None:
    for section in conf("pjsip.conf"):
        known = PJSIP_OPTIONS.get(section.get("type") or "")
        if known is None:
            continue
        for entry in section.entries:
            assert entry.key in known, f"{entry.where}: [{section.name}] unknown {section.get('type')} option '{entry.key}'"


def test_pjsip_one_global_and_a_udp_transport() -> None:
    assert len(pjsip_of_type("global")) == 1
    transports = pjsip_of_type("transport")
    assert transports and all(t.get("protocol") == "udp" for t in transports)
    for transport in transports:
        assert re.fullmatch(r"[0-9.]+:\d+", transport.get("bind") or ""), transport.where


def test_pjsip_endpoints_reference_existing_objects() -> None:
    aors = {s.name for s in pjsip_of_type("aor")}
    auths = {s.name for s in pjsip_of_type("auth")}
    transports = {s.name for s in pjsip_of_type("transport")}
    endpoints = pjsip_of_type("endpoint")
    assert endpoints
    for endpoint in endpoints:
        assert csv(endpoint.get("aors")), f"{endpoint.where}: endpoint without aors"
        for aor in csv(endpoint.get("aors")):
            assert aor in aors, f"{endpoint.where}: aor '{aor}' does not exist"
        for key in ("auth", "outbound_auth"):
            for auth in csv(endpoint.get(key)):
                assert auth in auths, f"{endpoint.where}: {key} '{auth}' does not exist"
        if endpoint.get("transport"):
            assert endpoint.get("transport") in transports, endpoint.where
    names = {e.name for e in endpoints}
    for identify in pjsip_of_type("identify"):
        assert identify.get("endpoint") in names, f"{identify.where}: identify for unknown endpoint"
        assert identify.get_all("match"), f"{identify.where}: identify without match"


def test_pjsip_endpoint_contexts_exist_in_the_dialplan() -> None:
    for endpoint in pjsip_of_type("endpoint"):
        context = endpoint.get("context")
        assert context in dialplan(), f"{endpoint.where}: context '{context}' is not in extensions.conf"


def test_pjsip_media_and_dtmf() -> None:
    for endpoint in pjsip_of_type("endpoint"):
        assert endpoint.get_all("disallow")[:1] == ["all"], endpoint.where
        assert set(csv(endpoint.get("allow"))) == {"ulaw", "alaw"}, endpoint.where
        assert endpoint.get("dtmf_mode") == "rfc4733", endpoint.where
        # Recording and bridging need the media in Asterisk.
        assert endpoint.get("direct_media") == "no", endpoint.where


def test_pjsip_trunk_is_identified_by_address_only() -> None:
    trunk = pjsip_named("trunk", "endpoint")
    assert trunk is not None and trunk.get("context") == "from-trunk"
    assert trunk.get("identify_by") == "ip"
    assert not trunk.get("auth")
    assert any(i.get("endpoint") == "trunk" for i in pjsip_of_type("identify"))


def test_pjsip_agents() -> None:
    for ext in AGENT_EXTENSIONS:
        endpoint = pjsip_named(ext, "endpoint")
        assert endpoint is not None, f"agent endpoint {ext} missing"
        assert endpoint.get("context") == "agents"
        aor = pjsip_named(endpoint.get("aors"), "aor")
        assert aor is not None and aor.get("max_contacts") == "1" and aor.get("remove_existing") == "yes"
        auth = pjsip_named(endpoint.get("auth"), "auth")
        assert auth is not None, f"agent {ext} has no auth"
        assert auth.get("auth_type") == "userpass"
        assert auth.get("username") == ext
        password = auth.get("password") or ""
        assert password and password != ext, f"{auth.where}: agent {ext} needs a password"


def acl_allows(acl: Section, address: str) -> bool:
    """Asterisk's ast_apply_ha: start allowed, the last matching rule wins."""
    allowed = True
    ip = ipaddress.ip_address(address)
    for entry in acl.entries:
        if entry.key in ("permit", "deny"):
            network = ipaddress.ip_network(entry.value.replace(" ", ""), strict=False)
            if ip in network:
                allowed = entry.key == "permit"
    return allowed


def test_pjsip_acl_admits_the_carrier_and_refuses_strangers() -> None:
    acls = pjsip_of_type("acl")
    assert acls, "no PJSIP acl: the public SIP port would accept anyone"
    carrier = [m.rsplit(":", 1)[0] if m.count(":") == 1 else m
               for i in pjsip_of_type("identify") if i.get("endpoint") == "trunk" for m in i.get_all("match")]
    assert carrier
    for address in carrier:
        host = address.split("/")[0]
        assert all(acl_allows(acl, host) for acl in acls), f"the acl refuses the carrier {host}"
    assert not all(acl_allows(acl, "203.0.113.7") for acl in acls), "the acl admits any address"


# ------------------------------------------------------------------ manager.conf


def manager_users() -> list[Section]:
    return [s for s in conf("manager.conf") if s.name.lower() != "general"]


def test_manager_listens_on_loopback_only() -> None:
    general = conf("manager.conf").get("general")
    assert general is not None
    assert general.get("enabled") == "yes"
    assert general.get("bindaddr") == "127.0.0.1"
    assert (general.get("webenabled") or "no") == "no"


def test_manager_has_one_least_privilege_user() -> None:
    users = manager_users()
    assert [u.name for u in users] == ["hotline"]
    user = users[0]
    assert set(e.key for e in user.entries) <= MANAGER_USER_KEYS
    assert user.get("secret")
    assert user.get_all("deny") and user.get_all("permit"), "the user needs deny and permit"
    assert user.entries.index(next(e for e in user.entries if e.key == "deny")) < user.entries.index(
        next(e for e in user.entries if e.key == "permit")), "deny must come before permit"
    for permit in user.get_all("permit"):
        assert ipaddress.ip_network(permit, strict=False).subnet_of(ipaddress.ip_network("127.0.0.0/8"))
    read, write = set(csv(user.get("read"))), set(csv(user.get("write")))
    assert read <= AMI_CLASSES and write <= AMI_CLASSES
    assert "all" not in read and not write & AMI_WRITE_FORBIDDEN
    assert AMI_READ_NEEDED <= read
    assert user.get("writetimeout", "").isdigit()


@needs_reference
@pytest.mark.parametrize("action", AMI_ACTIONS_USED)
def test_manager_user_may_send_every_action_we_use(action: str) -> None:
    privileges = action_privileges()
    assert action in privileges, f"{action} is not in reference/ami-action-docs.txt"
    needed = privileges[action]
    write = set(csv(manager_users()[0].get("write")))
    # manager.c: allowed if the user has any one of the action's classes.
    assert not needed or needed & write, f"{action} needs one of {sorted(needed)}; write = {sorted(write)}"


# ------------------------------------------------------------------ the other files


def test_cel_is_disabled_and_http_is_off() -> None:
    assert conf("cel.conf").get("general").get("enable") == "no"
    http = conf("http.conf").get("general")
    assert http.get("enabled") == "no"


def test_rtp_port_range() -> None:
    general = conf("rtp.conf").get("general")
    start, end = int(general.get("rtpstart")), int(general.get("rtpend"))
    assert 1024 < start < end <= 65535 and end - start >= 1000


def test_music_on_hold_class_used_by_the_dialplan_exists() -> None:
    classes = {s.name for s in conf("musiconhold.conf") if s.name != "general"}
    for step in dialplan_steps():
        if step.app.lower() == "musiconhold":
            wanted = step.args.split(",", 1)[0].strip() or "default"
            assert wanted in classes, f"{step.where}: music on hold class '{wanted}' is not defined"
    default = conf("musiconhold.conf").get("default")
    assert default.get("mode") == "files" and default.get("directory")


def test_indications_default_country_is_defined() -> None:
    country = conf("indications.conf").get("general").get("country")
    zone = conf("indications.conf").get(country)
    assert zone is not None and zone.get("ring"), f"tone zone '{country}' is not defined"


def test_logger_writes_to_the_console() -> None:
    logfiles = conf("logger.conf").get("logfiles")
    assert logfiles is not None and "console" in logfiles


# Asterisk puts the channel snapshot in every channel event, UserEvent included: a custom header
# with one of these names would arrive twice, and a reader would take the snapshot's value.
SNAPSHOT_HEADERS = {"Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
                    "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context", "Exten",
                    "Priority", "Uniqueid", "Linkedid", "UserEvent", "Event", "Privilege"}


def test_user_event_headers_do_not_shadow_the_channel_snapshot() -> None:
    for context, lines in dialplan().items():
        for line in lines:
            if line.kind != "exten" or line.app.lower() != "userevent":
                continue
            for item in line.args.split(",")[1:]:
                key = item.split(":", 1)[0].strip()
                assert key not in SNAPSHOT_HEADERS, f"{line.where}: UserEvent header {key!r} clashes"
