"""Data step speed: generate, write, validate and count the identity dataset.

    .venv/bin/python benchmarks/data_speed.py [--tokenizer DIR] [--repeat 3]

Times (best of ``--repeat``) for the tutorial's n=8000 (16,002 records) and varied datasets of
2,000 and 17,000 records: generation, the JSON text, validation of the written file, and
statistics (characters; tokens too with ``--tokenizer``, e.g. the demo model's folder).
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data import (  # noqa: E402
    IdentityFacts,
    dataset_stats,
    dumps_dataset,
    generate_tutorial,
    generate_varied,
    load_tokenizer,
    validate_file,
)


def best(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer", default=None, help="a model folder, for token statistics")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    cases = {
        "tutorial n=8000": lambda: generate_tutorial("伍鲜同志", 8000),
        "varied n=2000": lambda: generate_varied(IdentityFacts("伍鲜同志"), n=2000).train,
        "varied n=17000": lambda: generate_varied(IdentityFacts("伍鲜同志"), n=17000).train,
    }
    print(
        "| dataset | records | MB | generate s | JSON text s | validate s | stats chars s | stats tokens s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in cases.items():
            t_gen, records = best(make, args.repeat)
            t_dump, text = best(lambda records=records: dumps_dataset(records), args.repeat)
            path = Path(tmp) / "d.json"
            path.write_text(text, encoding="utf-8")
            t_val, report = best(lambda path=path: validate_file(path), args.repeat)
            assert report.ok, report.lines(3)
            t_chars, _ = best(lambda records=records: dataset_stats(records), args.repeat)
            t_tok = "-"
            if tokenizer is not None:
                t, _ = best(
                    lambda records=records: dataset_stats(records, tokenizer=tokenizer), args.repeat
                )
                t_tok = f"{t:.2f}"
            mb = len(text.encode("utf-8")) / 1e6
            print(
                f"| {name} | {len(records)} | {mb:.1f} | {t_gen:.2f} | {t_dump:.2f} | {t_val:.2f} "
                f"| {t_chars:.2f} | {t_tok} |"
            )


if __name__ == "__main__":
    main()
