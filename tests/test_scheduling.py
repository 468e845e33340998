"""The installed Snakemake keeps jobs within --cores: two 2-thread jobs that become ready together on
2 cores run one after the other (Snakemake 9.10-9.15 ran them side by side: snakemake issue 3913)."""

from __future__ import annotations

import subprocess
import sys

SNAKEFILE = '''
rule final:
    input: "a", "b"

rule prepare:
    output: "common"
    threads: 2
    shell: "touch {output}"

rule job:
    output: "{name}"
    input: "common"
    wildcard_constraints: name="a|b"
    threads: 2
    shell: "python -c 'import time; print(time.time())' > {output}; sleep 2; python -c 'import time; print(time.time())' >> {output}"
'''


def test_two_jobs_of_two_threads_do_not_share_two_cores(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--quiet", "--directory", str(tmp_path),
                    "-s", str(tmp_path / "Snakefile")], check=True, capture_output=True, timeout=120)
    (a_start, a_end), (b_start, b_end) = ([float(x) for x in (tmp_path / name).read_text().split()] for name in "ab")
    assert a_end <= b_start or b_end <= a_start, "Snakemake ran two 2-thread jobs at once on --cores 2"
