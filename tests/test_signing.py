"""Bundles a device can verify: Ed25519 signatures over the manifest, checked at build, at start and
on reload; tampered, unsigned and wrongly signed bundles are refused with one line. Keys are made
per test, never stored in the repository."""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest

from edgemoe.cli import main
from edgemoe.core.bundle import read_engine_manifest
from edgemoe.core.errors import BundleError
from edgemoe.core.signing import SIGNATURE, TrustedKey, generate_key_pair
from edgemoe.daemon.config import DaemonConfig
from edgemoe.daemon.service import Daemon
from edgemoe.engines.build import build_engines
from edgemoe.engines.target import load_target
from edgemoe.runtime.loader import load_engine_bundle
from tests.polling import HANG_S, wait_for


@pytest.fixture()
def keys(tmp_path: Path) -> dict[str, Path]:
    """Two key pairs: ``trusted`` (and its ``.pub``) and ``other``."""
    (tmp_path / "keys").mkdir()
    out = {"trusted": tmp_path / "keys" / "trusted", "other": tmp_path / "keys" / "other"}
    assert main(["sign", "--new-key", str(out["trusted"])]) == 0  # the verb
    generate_key_pair(out["other"])  # the function behind it
    return {**out, "trusted.pub": out["trusted"].with_name("trusted.pub"), "other.pub": out["other"].with_name("other.pub")}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _sign(bundle: Path, key: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["sign", str(bundle), "--key", str(key)]) == 0
    return capsys.readouterr().out


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_new_keys_are_private_and_never_overwritten(keys: dict[str, Path]) -> None:
    assert stat.S_IMODE(keys["trusted"].stat().st_mode) == 0o600
    assert TrustedKey.load(keys["trusted.pub"]).id != TrustedKey.load(keys["other.pub"]).id
    with pytest.raises(Exception, match="exists; keys are never overwritten"):
        generate_key_pair(keys["trusted"])


def test_build_takes_only_a_bundle_the_trusted_key_signed(bundle_dir: Path, tmp_path: Path, keys: dict[str, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _copy(bundle_dir, tmp_path / "bundle")
    trust = ["--trust", str(keys["trusted.pub"])]
    build = ["build", str(bundle), "--target", "cpu", "--out", str(tmp_path / "engines")]
    assert main(build + trust) == 2
    assert "not signed (no manifest.sig)" in _one_line_error(capsys)
    _sign(bundle, keys["other"], capsys)
    assert main(build + trust) == 2
    assert f"signed by key {TrustedKey.load(keys['other.pub']).id}, not by the trusted key" in _one_line_error(capsys)
    assert "with key " + TrustedKey.load(keys["trusted.pub"]).id in _sign(bundle, keys["trusted"], capsys)
    assert main(build + trust) == 0
    built = read_engine_manifest(tmp_path / "engines")
    assert built.source_bundle.signed_by == TrustedKey.load(keys["trusted.pub"]).id
    assert not list(tmp_path.glob(".engines*")), "no temporary directory is left behind"


def test_a_tampered_signed_bundle_is_refused_at_build(bundle_dir: Path, tmp_path: Path, keys: dict[str, Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _copy(bundle_dir, tmp_path / "bundle")
    _sign(bundle, keys["trusted"], capsys)
    trust = TrustedKey.load(keys["trusted.pub"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["expected_accuracy"]["masks"]["15"] = 1.0  # an edit the signature must catch
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    with pytest.raises(BundleError, match="signature does not verify: the manifest was changed after it was signed"):
        build_engines(bundle, load_target("cpu"), tmp_path / "engines", trust=trust)
    _sign(bundle, keys["trusted"], capsys)  # a file changed under a valid signature: its sha256 refuses it
    with open(bundle / "stages" / "gate.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match=r"stage 'gate' \(fp32\): sha256 mismatch"):
        build_engines(bundle, load_target("cpu"), tmp_path / "engines", trust=trust)
    assert not (tmp_path / "engines").exists()


def test_signing_refuses_a_bundle_whose_files_do_not_match(bundle_dir: Path, tmp_path: Path, keys: dict[str, Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _copy(bundle_dir, tmp_path / "bundle")
    with open(bundle / "stages" / "head.onnx", "ab") as fh:
        fh.write(b"\0")
    assert main(["sign", str(bundle), "--key", str(keys["trusted"])]) == 2
    assert "stage 'head' (fp32): sha256 mismatch" in _one_line_error(capsys)
    assert not (bundle / SIGNATURE).exists()


def test_the_runtime_and_daemon_start_only_on_a_signed_engine_bundle(
        engines_dir: Path, tmp_path: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    engines = _copy(engines_dir, tmp_path / "engines")
    trust = TrustedKey.load(keys["trusted.pub"])
    config = tmp_path / "daemon.yaml"
    config.write_text(json.dumps({"sources": {"network": [{"port": 0}]}, "metrics": {"enabled": False}}))
    run = ["run", str(engines), "--config", str(config), "--max-seconds", "0.2", "--trust", str(keys["trusted.pub"])]
    assert main(run) == 2
    assert "not signed" in _one_line_error(capsys)
    _sign(engines, keys["other"], capsys)
    with pytest.raises(BundleError, match="not by the trusted key"):
        load_engine_bundle(engines, trust=trust)
    _sign(engines, keys["trusted"], capsys)
    load_engine_bundle(engines, trust=trust).close()
    target = next(engines.glob("gate.*"))
    target.write_bytes(target.read_bytes() + b"\0")
    assert main(run) == 2
    assert "engine 'gate': sha256 mismatch" in _one_line_error(capsys)


def _signed_build(engines_dir: Path, where: Path, key: Path | None, capsys: pytest.CaptureFixture[str]) -> Path:
    out = _copy(engines_dir, where)
    if key is not None:
        _sign(out, key, capsys)
    return out


def test_reload_checks_the_signature_and_the_old_bundle_keeps_serving(
        engines_dir: Path, tmp_path: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    good = _signed_build(engines_dir, tmp_path / "build_a", keys["trusted"], capsys)
    unsigned = _signed_build(engines_dir, tmp_path / "build_unsigned", None, capsys)
    foreign = _signed_build(engines_dir, tmp_path / "build_foreign", keys["other"], capsys)
    tampered = _signed_build(engines_dir, tmp_path / "build_tampered", keys["trusted"], capsys)
    with open(next(tampered.glob("head.*")), "ab") as fh:
        fh.write(b"\0")
    fresh = _signed_build(engines_dir, tmp_path / "build_b", keys["trusted"], capsys)
    current = tmp_path / "current"
    current.symlink_to(good.name)
    config = DaemonConfig.from_dict({"sources": {"network": [{"port": 0}]}, "metrics": {"port": 0},
                                     "loop": {"rate_hz": 50}, "trust": str(keys["trusted.pub"])}, "test")
    daemon = Daemon(current, config)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        for n, refused in enumerate((unsigned, foreign, tampered), start=1):
            _repoint(current, refused)
            daemon.reload()
            wait_for(lambda: _reloads(daemon, "failed") == n, what=f"reload {n} refused")
            assert daemon.loop.bundle_id == "build_a"
        _repoint(current, fresh)
        daemon.reload()
        wait_for(lambda: daemon.loop.bundle_id == "build_b", what="switch to build_b")
        assert _reloads(daemon, "ok") == 1
    finally:
        daemon.loop.stop()
        thread.join(timeout=HANG_S)
    assert not thread.is_alive()


def _reloads(daemon: Daemon, result: str) -> float:
    return daemon.metrics.registry.get_sample_value("edgemoe_reloads_total", {"result": result}) or 0.0


def _repoint(link: Path, target: Path) -> None:
    tmp = link.with_name(".next")
    tmp.symlink_to(target.name)
    os.replace(tmp, link)


