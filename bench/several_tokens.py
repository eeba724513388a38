"""Several tokens: a run over two tokens survives one running out of credit (issue 16).

    python bench/several_tokens.py [--rows 30]

On the simulator (no network): token "personal" has $0.0002 of prepaid credit, "team" is
unlimited, each token its own account (`separate_accounts`). Prints where the creates went, the
402s and duplicates the simulator counted, the run's per-token summary, and then
``replibatch spend --by token`` over the same cache. Tokens are named by profile and
fingerprint only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import warnings

import pandas as pd

import replibatch as rb
from replibatch.sim import serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=30)
    args = parser.parse_args()
    os.environ["REPLIBATCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="rb-bench-tokens-")
    personal, team = "r8_bench_personal_" + "a" * 22, "r8_bench_team_" + "b" * 26
    os.environ["REPLICATE_API_TOKEN_PERSONAL"] = personal
    os.environ["REPLICATE_API_TOKEN_TEAM"] = team
    with serve(time_scale=0.01, seed=0, credit={personal: 0.0002}, separate_accounts=True) as sim:
        frame = pd.DataFrame({"prompt": [f"row {i}" for i in range(args.rows)], "max_tokens": 40})
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            res = rb.run(frame, model="replibatch/official-chat", base_url=sim.url,
                         api_token=["personal", "team"], progress=False, concurrency=4)
        names = {personal: "personal", team: "team"}
        print("rows:", {str(k): int(v) for k, v in res["status"].value_counts().items()})
        print("creates by token:", {names.get(t, t): n for t, n in sim.stats.creates_by_token.items()})
        print("402s:", sim.stats.statuses.get(402, 0), " duplicate creates:", sim.stats.duplicate_creates)
        for w in seen:
            print("warning:", w.message)
        for fingerprint, figures in res.attrs["replibatch"]["tokens"].items():
            print(f"token {fingerprint}: {figures}")
    sys.stdout.flush()
    subprocess.run([sys.executable, "-m", "replibatch", "spend", "--by", "token"], check=True)


if __name__ == "__main__":
    main()
