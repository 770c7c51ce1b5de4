"""beeline (Hive JDBC 2.3.10, shipped with pyspark) through sparkgate, compared with direct."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

import pytest
from conftest import ENDPOINT_NAMES

from helpers import spark_home


def beeline(ep, script: str, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs `script` with `beeline -f` (beeline commands such as !tables only work from a file)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    try:
        cmd = [
            str(spark_home() / "bin" / "beeline"), "-u", ep.jdbc_url, "-n", "alice",
            "--outputformat=csv2", "--showHeader=true", *extra, "-f", f.name,
        ]
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, check=False, capture_output=True, text=True, timeout=timeout)
    finally:
        os.unlink(f.name)


def table_for(name: str) -> str:
    return "bl_" + name.replace("-", "_")


def normalized(out: str, table: str) -> list[str]:
    """Result lines only: no timings, no connection chatter, the per-endpoint table name unified."""
    lines = []
    out = re.sub(r"\d+: jdbc:hive2://\S+> ", "", out.replace(table, "TBL"))
    for line in out.splitlines():
        if re.search(r"rows? (selected|affected)|^Connecting|^Connected|^Driver|^Transaction|^Closing|^Beeline|^No rows", line):
            continue
        if line.strip():
            lines.append(line)
    return lines


SCRIPT = """
create table {t} (id int, name string, amount decimal(10,2), tags array<string>) using parquet;
insert into {t} values (1, 'one', 1.50, array('a','b')), (2, 'two', null, array()), (3, null, 3.25, null);
select * from {t} order by id;
select count(*), sum(amount) from {t};
!tables
!columns {t}
drop table {t};
"""

_direct: dict[str, object] = {}


def run_script(ep, name):
    t = table_for(name)
    result = beeline(ep, SCRIPT.format(t=t))
    assert result.returncode == 0, result.stderr[-3000:]
    return normalized(result.stdout, t)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", ENDPOINT_NAMES)
def test_ddl_insert_select_tables_columns(endpoints, name):
    got = run_script(endpoints[name], name)
    if "direct" not in _direct:
        _direct["direct"] = got if name == "direct" else run_script(endpoints["direct"], "direct")
    assert got == _direct["direct"]
    text = "\n".join(got).replace("\0", "")
    assert '1,one,1.50,["a","b"]' in text
    assert "2,two,NULL,[]" in text
    assert "3,NULL,3.25,NULL" in text
    assert "3,4.75" in text  # count and sum
    assert "TBL" in text  # !tables lists the table
    for column in ("id", "name", "amount", "tags"):
        assert re.search(rf"\b{column}\b", text), column


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ENDPOINT_NAMES)
def test_wrong_statement_error_reaches_client(endpoints, name):
    result = beeline(endpoints[name], "select * from no_such_table_anywhere;")
    assert result.returncode != 0
    err = result.stderr + result.stdout
    assert "TABLE_OR_VIEW_NOT_FOUND" in err or "cannot be found" in err, err[-2000:]
    assert "no_such_table_anywhere" in err
