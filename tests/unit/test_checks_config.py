"""Health check configuration: defaults, the service default merged into real servers,
every invalid value reported with its key path."""

from __future__ import annotations

from typing import Any

import pytest

from hadirector.config.load import load_mapping, load_text
from hadirector.config.schema import HealthCheck, HttpUrl, RealServer, VirtualServer
from hadirector.errors import ConfigError

VS = "virtual_server[0]"
RS = f"{VS}.real_server[0]"


def service(check: Any = None, rs_check: Any = None, **over: Any) -> dict[str, Any]:
    rs: dict[str, Any] = {"address": "198.51.100.11:8080"}
    if rs_check is not None:
        rs["check"] = rs_check
    vs: dict[str, Any] = {"address": "192.0.2.10:80", "real_server": [rs]}
    if check is not None:
        vs["check"] = check
    vs.update(over)
    return vs


def loaded(vs: dict[str, Any]) -> VirtualServer:
    return load_mapping({"virtual_server": [vs]}).virtual_servers[0]


def first_rs(vs: dict[str, Any]) -> RealServer:
    return loaded(vs).real_servers[0]


def problems(vs: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_mapping({"virtual_server": [vs]})
    return [str(p) for p in info.value.problems]


def test_no_check_means_none_and_quiesce() -> None:
    vs = loaded(service())
    assert vs.health_action == "quiesce"
    assert vs.check is None
    assert vs.real_servers[0].check is None


def test_defaults_of_a_tcp_check() -> None:
    check = first_rs(service({"type": "tcp"})).check
    assert check == HealthCheck(
        type="tcp", port=None, interval_s=2.0, timeout_s=1.0, rise=2, fall=3
    )


def test_alpha_is_off_by_default_and_merged_from_the_service() -> None:
    assert first_rs(service({"type": "tcp"})).check.alpha is False  # type: ignore[union-attr]
    vs = loaded(service({"type": "tcp", "alpha": True}, rs_check={"fall": 5}))
    check = vs.real_servers[0].check
    assert check is not None and (check.alpha, check.fall) == (True, 5)
    vs = loaded(service({"type": "tcp", "alpha": True}, rs_check={"alpha": False}))
    assert vs.real_servers[0].check is not None and vs.real_servers[0].check.alpha is False


def test_short_interval_halves_the_default_timeout() -> None:
    check = first_rs(service({"type": "tcp", "interval": 0.5})).check
    assert check is not None
    assert (check.interval_s, check.timeout_s) == (0.5, 0.25)


def test_real_server_overrides_the_service_default_key_by_key() -> None:
    vs = service(
        {"type": "http", "path": "/health", "interval": 5, "expect_status": [200, 204]},
        {"fall": 1, "host": "www.example.com"},
    )
    check = first_rs(vs).check
    assert check is not None
    assert check.type == "http"
    assert check.path == "/health"
    assert check.interval_s == 5.0
    assert check.expect_status == (200, 204)
    assert (check.fall, check.rise) == (1, 2)
    assert check.host == "www.example.com"


def test_a_real_server_may_change_the_type_and_drops_inapplicable_values() -> None:
    check = first_rs(service({"type": "http", "path": "/x"}, {"type": "tcp", "port": 22})).check
    assert check == HealthCheck(type="tcp", port=22)


def test_https_and_script_and_remove() -> None:
    vs = loaded(
        service(
            {"type": "https", "tls_verify": True, "expect_body": "OK", "expect_status": 204},
            health_action="remove",
        )
    )
    assert vs.health_action == "remove"
    check = vs.real_servers[0].check
    assert check is not None
    assert (check.type, check.tls_verify, check.expect_body, check.expect_status) == (
        "https",
        True,
        "OK",
        (204,),
    )
    script = first_rs(service({"type": "script", "script": "/bin/check --fast 'a b'"})).check
    assert script is not None
    assert script.script == ("/bin/check", "--fast", "a b")


def test_toml_tables_load() -> None:
    text = """
[[virtual_server]]
address = "192.0.2.10:80"
health_action = "remove"
  [virtual_server.check]
  type = "http"
  path = "/ready"
  [[virtual_server.real_server]]
  address = "198.51.100.11:8080"
  [[virtual_server.real_server]]
  address = "198.51.100.12:8080"
    [virtual_server.real_server.check]
    type = "script"
    script = ["/usr/local/bin/probe", "x"]
"""
    vs = load_text(text).virtual_servers[0]
    first, second = vs.real_servers
    assert first.check is not None and first.check.path == "/ready"
    assert second.check is not None and second.check.script == ("/usr/local/bin/probe", "x")


def test_fwmark_real_server_without_port_needs_a_check_port() -> None:
    vs = {
        "fwmark": 7,
        "check": {"type": "tcp"},
        "real_server": [{"address": "198.51.100.11"}],
    }
    assert problems(vs) == [
        f'{VS}.check.port: is required: real server "198.51.100.11" has no port to check'
    ]
    vs["check"] = {"type": "tcp", "port": 443}
    check = first_rs(vs).check
    assert check is not None and check.port == 443


INVALID: list[tuple[dict[str, Any], list[str]]] = [
    (
        service(health_action="drain"),
        [f'{VS}.health_action: must be one of quiesce|remove, got "drain"'],
    ),
    (service({}), [f"{VS}.check.type: is required"]),
    (service("tcp"), [f'{VS}.check: must be a table, got string "tcp"']),
    (
        service({"type": "icmp"}),
        [f'{VS}.check.type: must be one of tcp|http|https|script|udp|dns, got "icmp"'],
    ),
    (service({"type": "tcp", "port": 0}), [f"{VS}.check.port: must be 1..65535, got 0"]),
    (
        service({"type": "tcp", "interval": 0}),
        [f"{VS}.check.interval: must be more than 0 and at most 86400 seconds, got 0"],
    ),
    (
        service({"type": "tcp", "interval": 1, "timeout": 1}),
        [f"{VS}.check.timeout: timeout (1 s) must be less than interval (1 s)"],
    ),
    (service({"type": "tcp", "rise": 0}), [f"{VS}.check.rise: must be 1..1000, got 0"]),
    (
        service({"type": "tcp", "fall": True}),
        [f"{VS}.check.fall: must be an integer, got boolean true"],
    ),
    (
        service({"type": "tcp", "path": "/x"}),
        [f"{VS}.check.path: applies to type http|https only, not tcp"],
    ),
    (
        service({"type": "http", "path": "health"}),
        [
            f'{VS}.check.path: must start with "/" and hold no spaces or control characters, '
            'got "health"'
        ],
    ),
    (
        service({"type": "http", "path": "/a b"}),
        [
            f'{VS}.check.path: must start with "/" and hold no spaces or control characters, '
            'got "/a b"'
        ],
    ),
    (
        service({"type": "http", "expect_status": [200, 99]}),
        [f"{VS}.check.expect_status[1]: must be 100..599, got 99"],
    ),
    (
        service({"type": "http", "expect_status": []}),
        [f"{VS}.check.expect_status: must not be empty"],
    ),
    (
        service({"type": "http", "tls_verify": True}),
        [f"{VS}.check.tls_verify: applies to type https only, not http"],
    ),
    (service({"type": "http", "expect_body": ""}), [f"{VS}.check.expect_body: must not be empty"]),
    (
        service({"type": "tcp", "alpha": "yes"}),
        [f'{VS}.check.alpha: must be true or false, got string "yes"'],
    ),
    (service({"type": "script"}), [f'{VS}.check.script: is required with type = "script"']),
    (
        service({"type": "script", "script": "check.sh"}),
        [f'{VS}.check.script: the program must be an absolute path, got "check.sh"'],
    ),
    (
        service({"type": "tcp", "script": "/bin/true"}),
        [f"{VS}.check.script: applies to type script only, not tcp"],
    ),
    (
        service({"type": "tcp", "retries": 3}),
        [f"{VS}.check.retries: unknown key"],
    ),
    (
        service({"type": "http"}, {"expect_status": "200"}),
        [
            f"{RS}.check.expect_status: must be a status code 100..599 "
            'or a range like "200-299", got "200"'
        ],
    ),
    (service(None, {"port": 80}), [f"{RS}.check.type: is required"]),
]


@pytest.mark.parametrize(("vs", "expected"), INVALID)
def test_invalid(vs: dict[str, Any], expected: list[str]) -> None:
    assert problems(vs) == expected


def test_every_problem_at_once() -> None:
    found = problems(service({"type": "http", "rise": 0, "fall": 0, "path": "x"}))
    assert [p.split(":")[0] for p in found] == [
        f"{VS}.check.rise",
        f"{VS}.check.fall",
        f"{VS}.check.path",
    ]


def test_status_ranges_digest_and_several_urls() -> None:
    digest = "5D41402ABC4B2A76B9719D911017C592"  # md5("hello"), as genhash prints it
    check = first_rs(
        service({"type": "http", "expect_status": ["200-204", 301, "300-301"], "digest": digest})
    ).check
    assert check is not None
    assert check.expect_status == (200, 201, 202, 203, 204, 301, 300)
    assert check.digest == digest.lower()
    assert check.http_urls == (HttpUrl("/", check.expect_status, None, digest.lower()),)
    # urls: each entry names its path; what it leaves out comes from the check's keys.
    several = first_rs(
        service(
            {
                "type": "https",
                "expect_status": "200-299",
                "urls": [
                    {"path": "/health"},
                    {"path": "/db", "expect_status": [200], "expect_body": "ok"},
                    {"path": "/static/logo.png", "digest": digest},
                ],
            }
        )
    ).check
    assert several is not None and several.http_urls == (
        HttpUrl("/health", tuple(range(200, 300))),
        HttpUrl("/db", (200,), "ok"),
        HttpUrl("/static/logo.png", tuple(range(200, 300)), None, digest.lower()),
    )
    # A real server's own check keeps the service's urls unless it gives its own.
    merged = first_rs(
        service({"type": "http", "urls": [{"path": "/a"}, {"path": "/b"}]}, {"port": 8081})
    ).check
    assert merged is not None and [u.path for u in merged.http_urls] == ["/a", "/b"]
    tcp = first_rs(service({"type": "http", "urls": [{"path": "/a"}]}, {"type": "tcp"})).check
    assert tcp is not None and (tcp.urls, tcp.digest) == ((), None)


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        (
            {"type": "http", "expect_status": "299-200"},
            "check.expect_status: must be a status code",
        ),
        (
            {"type": "http", "expect_status": ["200-600"]},
            "check.expect_status[0]: must be a status code",
        ),
        ({"type": "http", "digest": "abc"}, "check.digest: must be an MD5 digest, 32 hexadecimal"),
        ({"type": "tcp", "digest": "0" * 32}, "check.digest: applies to type http|https only"),
        ({"type": "http", "urls": []}, "check.urls: must not be empty"),
        ({"type": "http", "urls": [{"expect_status": 200}]}, "check.urls[0].path: is required"),
        ({"type": "http", "urls": [{"path": "x"}]}, 'check.urls[0].path: must start with "/"'),
        (
            {"type": "http", "urls": [{"path": "/", "colour": 1}]},
            "check.urls[0].colour: unknown key",
        ),
        (
            {"type": "http", "path": "/", "urls": [{"path": "/a"}]},
            "check.path: give the path in each",
        ),
        (
            {"type": "http", "urls": [{"path": f"/{i}"} for i in range(17)]},
            "check.urls: at most 16",
        ),
        (
            {"type": "script", "script": "/bin/true", "urls": [{"path": "/"}]},
            "check.urls: applies to type http|https only",
        ),
    ],
)
def test_invalid_urls_and_digests(check: dict[str, Any], expected: str) -> None:
    found = problems(service(check))
    assert any(p.startswith(f"{VS}.{expected}") for p in found), found


def test_several_checks_per_server() -> None:
    tcp, http = {"type": "tcp"}, {"type": "http", "path": "/health"}
    vs = loaded(service([tcp, http]))
    rs = vs.real_servers[0]
    assert [c.type for c in rs.checks] == ["tcp", "http"]
    assert rs.check == rs.checks[0] and [c.type for c in vs.extra_checks] == ["http"]
    # A real server's own array replaces the service's; so does a table where the
    # service has several; a table onto one check still merges key by key.
    assert [
        c.type
        for c in first_rs(service([tcp, http], [{"type": "script", "script": "/bin/true"}])).checks
    ] == ["script"]
    assert [c.type for c in first_rs(service([tcp, http], {"type": "https"})).checks] == ["https"]
    merged = first_rs(service({"type": "http", "path": "/a"}, {"expect_status": 204})).checks
    assert [(c.type, c.path, c.expect_status) for c in merged] == [("http", "/a", (204,))]
    assert first_rs(service()).checks == ()


@pytest.mark.parametrize(
    ("vs", "expected"),
    [
        (service([]), f"{VS}.check: must not be empty"),
        (service([{"type": "tcp"}] * 9), f"{VS}.check: at most 8 checks, got 9"),
        (service([{"type": "tcp"}, {"path": "/"}]), f"{VS}.check[1].type: is required"),
        (
            service(
                [{"type": "script", "script": "/bin/true"}, {"type": "tcp"}],
                address="192.0.2.10:0",
                persistence_timeout=60,
            )
            | {"real_server": [{"address": "198.51.100.11"}]},
            f"{VS}.check[1].port: is required",
        ),
    ],
)
def test_invalid_check_arrays(vs: dict[str, Any], expected: str) -> None:
    found = problems(vs)
    assert any(p.startswith(expected) for p in found), found


def test_tls_files_and_server_name() -> None:
    check = first_rs(
        service(
            {
                "type": "https",
                "tls_ca_file": "/etc/hadirector/ca.pem",
                "tls_cert_file": "/etc/hadirector/client.pem",
                "tls_key_file": "/etc/hadirector/client.key",
                "tls_server_name": "www.example.org",
            }
        )
    ).check
    assert check is not None and check.tls_verify  # a CA file turns verification on
    assert (check.tls_ca_file, check.tls_server_name) == (
        "/etc/hadirector/ca.pem",
        "www.example.org",
    )
    plain = first_rs(service({"type": "http"})).check
    assert plain is not None and (plain.tls_ca_file, plain.tls_server_name) == (None, None)


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        ({"type": "https", "tls_cert_file": "/c.pem"}, "check.tls_key_file: is required with"),
        ({"type": "https", "tls_key_file": "/k.pem"}, "check.tls_cert_file: is required with"),
        ({"type": "https", "tls_ca_file": "ca.pem"}, "check.tls_ca_file: must be an absolute path"),
        (
            {"type": "https", "tls_ca_file": "/ca.pem", "tls_verify": False},
            "check.tls_verify: cannot be false with tls_ca_file",
        ),
        ({"type": "http", "tls_server_name": "a"}, "check.tls_server_name: applies to type https"),
    ],
)
def test_invalid_tls_options(check: dict[str, Any], expected: str) -> None:
    found = problems(service(check))
    assert any(p.startswith(f"{VS}.{expected}") for p in found), found


def test_body_regex() -> None:
    check = first_rs(service({"type": "http", "expect_body_regex": "ok|healthy"})).check
    assert check is not None and check.http_urls[0].expect_body_regex == "ok|healthy"
    urls = first_rs(
        service(
            {
                "type": "http",
                "expect_body_regex": "a+",
                "urls": [{"path": "/x"}, {"path": "/y", "expect_body_regex": "b+"}],
            }
        )
    ).check
    assert urls is not None
    assert [u.expect_body_regex for u in urls.http_urls] == ["a+", "b+"]
    found = problems(service({"type": "http", "expect_body_regex": "(unclosed"}))
    assert any(
        p.startswith(f"{VS}.check.expect_body_regex: is not a regular expression") for p in found
    ), found


def test_connect_ip_and_bindto() -> None:
    check = first_rs(service({"type": "tcp", "connect_ip": "10.9.0.1", "bindto": "10.9.0.2"})).check
    assert check is not None and (str(check.connect_ip), str(check.bindto)) == (
        "10.9.0.1",
        "10.9.0.2",
    )
    found = problems(service({"type": "tcp", "connect_ip": "10.9.0.1", "bindto": "2001:db8::1"}))
    assert f"{VS}.check.bindto: must be IPv4 like connect_ip" in found, found
    found = problems(service({"type": "script", "script": "/bin/true", "bindto": "10.9.0.2"}))
    assert any(p.startswith(f"{VS}.check.bindto: applies to type") for p in found), found
    found = problems(service({"type": "tcp", "connect_ip": "host"}))
    assert any(p.startswith(f"{VS}.check.connect_ip: must be an IPv4 or IPv6") for p in found)


def test_dynamic_weight() -> None:
    check = first_rs(
        service({"type": "script", "script": "/usr/local/bin/w", "dynamic_weight": True})
    ).check
    assert check is not None and check.dynamic_weight
    found = problems(service({"type": "tcp", "dynamic_weight": True}))
    assert any(p.startswith(f"{VS}.check.dynamic_weight: applies to type script") for p in found)
