"""The SDK installs and runs alone on a gate: it imports nothing else of citycode."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = {"codeservice", "issuers", "verifiers", "tests", "bench"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_sdk_source_imports_only_itself_the_standard_library_and_its_declared_dependencies():
    declared = tomllib.loads((ROOT / "sdk" / "pyproject.toml").read_text())["project"]
    extras = declared["optional-dependencies"]
    distributions = declared["dependencies"] + extras["image"] + extras["sm2"]
    import_names = {"cryptography", "cbor2", "jwt", "PIL", "zxingcpp", "pyzbar", "tongsuopy"}
    assert {d.split(">")[0].split("=")[0].split("[")[0] for d in distributions} == {
        "cryptography", "cbor2", "pyjwt", "pillow", "zxing-cpp", "pyzbar", "tongsuopy"}
    for path in (ROOT / "sdk").rglob("*.py"):
        found = _imports(path) - {"sdk"}
        assert not found & OURS, f"{path.name} imports {found & OURS}"
        foreign = {n for n in found - import_names if n not in sys.stdlib_module_names}
        assert not foreign, f"{path.name} imports undeclared {foreign}"


def test_sdk_verifies_a_code_with_the_rest_of_citycode_unimportable(make_code, trust_token, keyring, tmp_path):
    (tmp_path / "trust.jwt").write_text(trust_token)
    (tmp_path / "anchor.pem").write_bytes(keyring.anchor_public_pem())
    code = make_code()
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {sorted(OURS)!r}:
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import pkgutil, importlib, sdk
        for mod in pkgutil.walk_packages(sdk.__path__, "sdk."):
            importlib.import_module(mod.name)
        from pathlib import Path
        from sdk import TrustList, Verifier, Scene, load_anchor
        anchor = load_anchor(Path({str(tmp_path / "anchor.pem")!r}))
        trust = TrustList.load_file({str(tmp_path / "trust.jwt")!r}, anchor)
        result = Verifier(trust).verify({code!r}, Scene("bus", frozenset({{"id"}}), single_use=True))
        assert result.accepted, result
        assert not [m for m in sys.modules if m.split(".")[0] in {sorted(OURS)!r}]
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
