"""The code's layers: no import cycle anywhere in dashboard/ (imports inside functions count too), and
a provider layer that runs without Django: it imports nothing of it, nor of the app but the pure
redaction, and works in a process where Django is not even configured."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dashboard"
PROVIDER_LAYER = PACKAGE / "providers"
# What the provider layer may import of the app: pure code, no Django (checked like the layer itself).
PROVIDER_LAYER_MAY_USE = {"dashboard.redaction"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts}


def imports(name: str) -> set[str]:
    """Every module of dashboard/ and every outside package that `name` imports, anywhere in it."""
    path = MODULES[name]
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from . import alarms` imports a module, not a name
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target)
    return found


def import_graph() -> dict[str, set[str]]:
    return {name: {other for other in imports(name) if other in MODULES and other != name} for name in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_dashboard():
    graph = import_graph()
    assert len(graph) > 40 and "dashboard.providers.base" in graph  # the walk found the tree
    assert cycles(graph) == []


def test_the_provider_layer_imports_no_django_and_nothing_of_the_app_above_it():
    layer = {name for name, path in MODULES.items() if path.is_relative_to(PROVIDER_LAYER)}
    offenders = {}
    for name in sorted(layer | PROVIDER_LAYER_MAY_USE):
        wrong = {
            other
            for other in imports(name)
            if other.split(".")[0] == "django"
            or (other.startswith("dashboard") and other not in layer | PROVIDER_LAYER_MAY_USE | {"dashboard"})
        }
        if wrong:
            offenders[name] = sorted(wrong)
    assert offenders == {}


def test_the_provider_layer_runs_where_django_is_not_configured():
    """A process with no settings: parse, call a mock upstream, count the call through the installed
    recorder, redact a key the provider was given, and never import Django."""
    script = textwrap.dedent(
        """
        import os, sys
        os.environ.pop("DJANGO_SETTINGS_MODULE", None)
        import httpx
        from dashboard.providers import PROVIDERS, anthropic, transport

        key = "sk-ant-api03-" + "Q" * 40
        batch = {
            "id": "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d", "type": "message_batch", "processing_status": "ended",
            "request_counts": {"processing": 0, "succeeded": 2, "errored": 0, "canceled": 0, "expired": 0},
            "created_at": "2024-09-24T18:37:24.100435Z", "expires_at": "2024-09-25T18:37:24.100435Z",
            "ended_at": "2024-09-24T18:39:00Z", "cancel_initiated_at": None, "archived_at": None,
            "results_url": None,
        }

        def answer(request):
            if request.url.path.endswith("/msgbatch_01missing"):
                return httpx.Response(404, json={"type": "error", "error": {"type": "not_found_error",
                                                                           "message": f"no such batch ({key})"}})
            return httpx.Response(200, json=batch)

        counted = []
        transport.record_calls_with(lambda account, result, seconds: counted.append((account, result)))
        client = httpx.Client(base_url="https://api.anthropic.com", transport=httpx.MockTransport(answer))
        provider = anthropic.AnthropicProvider(client, account="anthropic-x", secrets=(key,))
        assert provider.retrieve(batch["id"]).is_ended
        try:
            provider.retrieve("msgbatch_01missing")
        except Exception as error:
            assert key[:16] not in error.message and "[redacted]" in error.message, error.message
        else:
            raise AssertionError("a 404 raised nothing")
        assert counted == [("anthropic-x", "ok"), ("anthropic-x", "4xx")], counted
        assert {"anthropic", "openai", "azure-openai", "gemini", "bedrock"} <= set(PROVIDERS), sorted(PROVIDERS)
        django = sorted(name for name in sys.modules if name == "django" or name.startswith("django."))
        assert django == [], django
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin"}
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr
