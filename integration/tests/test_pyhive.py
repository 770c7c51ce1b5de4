"""PyHive and SQLAlchemy (the path Superset takes) through sparkgate, compared with direct."""

from __future__ import annotations

import hashlib
import time

import pytest
from conftest import ENDPOINT_NAMES
from pyhive import hive
from TCLIService import ttypes

TYPES_SQL = """
select 1 as ord,
  cast(1 as tinyint) as ti, cast(-2 as smallint) as si, 3 as i, cast(4000000000 as bigint) as bi,
  cast(1.5 as float) as f, cast(2.25 as double) as d, cast(12.345 as decimal(10,3)) as dec,
  'héllo, wörld' as s, cast('ab' as binary) as bin, true as b,
  date'2024-02-29' as dt, timestamp'2024-02-29 12:34:56.789' as ts,
  array(1, 2, 3) as arr, map('k', 1) as m, named_struct('a', 1, 'b', 'x') as st,
  cast('vc' as varchar(5)) as vc, cast('c' as char(3)) as ch
union all
select 2,
  cast(null as tinyint), cast(null as smallint), cast(null as int), cast(null as bigint),
  cast(null as float), cast(null as double), cast(null as decimal(10,3)),
  cast(null as string), cast(null as binary), cast(null as boolean),
  cast(null as date), cast(null as timestamp),
  cast(null as array<int>), cast(null as map<string,int>), cast(null as struct<a:int,b:string>),
  cast(null as varchar(5)), cast(null as char(3))
order by ord
"""

BIG_ROWS = 1_000_000
BIG_SQL = f"select id, cast(id * 7 as string) as s from range({BIG_ROWS})"

_direct_cache: dict[str, object] = {}


def connect(ep):
    return hive.connect("127.0.0.1", ep.port, username="alice", auth=ep.pyhive_auth)


def query(ep, sql):
    conn = connect(ep)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return cur.description, cur.fetchall()
    finally:
        conn.close()


def direct(endpoints, key, compute):
    if key not in _direct_cache:
        _direct_cache[key] = compute(endpoints["direct"])
    return _direct_cache[key]


@pytest.mark.parametrize("name", ENDPOINT_NAMES)
def test_every_column_type_and_nulls(endpoints, name):
    ep = endpoints[name]
    description, rows = query(ep, TYPES_SQL)
    assert (description, rows) == direct(endpoints, "types", lambda d: query(d, TYPES_SQL))
    names = [c[0] for c in description]
    values = dict(zip(names, rows[0]))
    # Real values, not only "same as direct".
    assert values["ti"] == 1 and values["si"] == -2 and values["i"] == 3 and values["bi"] == 4000000000
    assert values["f"] == 1.5 and values["d"] == 2.25
    assert str(values["dec"]) == "12.345"
    assert values["s"] == "héllo, wörld" and values["b"] is True
    assert values["bin"] in (b"ab", "ab")
    assert str(values["dt"]) == "2024-02-29"
    assert str(values["ts"]).startswith("2024-02-29 12:34:56.789")
    assert values["arr"] == "[1,2,3]" and values["m"] == '{"k":1}' and values["st"] == '{"a":1,"b":"x"}'
    assert values["vc"] == "vc" and values["ch"].rstrip() == "c"
    nulls = dict(zip(names, rows[1]))
    assert all(v is None for k, v in nulls.items() if k != "ord"), nulls


INTERVAL_SQL = """
select interval '1-2' year to month as ym, interval '3 04:05:06.789' day to second as dts,
  interval 3 days as days, cast(null as interval year to month) as ym_null,
  cast(null as interval day to second) as dts_null, cast(null as void) as nothing,
  timestamp_ntz'2024-01-01 10:00:00' as ts_ntz, cast(1.5 as decimal(38,18)) as d38
"""


def query_with_schema(ep, sql):
    """description, rows, and the full TTableSchema (type ids and qualifiers, e.g. a varchar's
    length and a decimal's precision/scale) from GetResultSetMetadata."""
    conn = connect(ep)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        rows = cur.fetchall()
        meta = conn.client.GetResultSetMetadata(ttypes.TGetResultSetMetadataReq(operationHandle=cur._operationHandle))
        assert meta.status.statusCode == ttypes.TStatusCode.SUCCESS_STATUS, meta.status
        return cur.description, rows, meta.schema
    finally:
        conn.close()


@pytest.fixture(scope="module")
def char_table(endpoints):
    query(endpoints["direct"], "create table if not exists it_chars (id int, v varchar(5), c char(3)) using parquet")
    query(endpoints["direct"], "insert overwrite it_chars values (1, 'ab', 'x'), (2, null, null)")
    return "it_chars"


@pytest.mark.parametrize("name", ENDPOINT_NAMES)
def test_varchar_char_intervals_and_type_qualifiers(endpoints, char_table, name):
    ep = endpoints[name]
    got = [query_with_schema(ep, f"select * from {char_table} order by id"), query_with_schema(ep, INTERVAL_SQL)]
    assert got == direct(endpoints, "chars", lambda d: [query_with_schema(d, f"select * from {char_table} order by id"),
                                                         query_with_schema(d, INTERVAL_SQL)])
    (chars_desc, chars_rows, chars_schema), (iv_desc, iv_rows, _) = got
    # Spark keeps char/varchar for table columns (in query casts they become string).
    assert [c[1] for c in chars_desc] == ["INT_TYPE", "VARCHAR_TYPE", "CHAR_TYPE"]
    quals = chars_schema.columns[1].typeDesc.types[0].primitiveEntry.typeQualifiers.qualifiers
    assert quals["characterMaximumLength"].i32Value == 5
    assert chars_rows == [(1, "ab", "x  "), (2, None, None)]
    assert [c[1] for c in iv_desc] == ["INTERVAL_YEAR_MONTH_TYPE", "INTERVAL_DAY_TIME_TYPE", "INTERVAL_DAY_TIME_TYPE",
                                       "INTERVAL_YEAR_MONTH_TYPE", "INTERVAL_DAY_TIME_TYPE", "NULL_TYPE",
                                       "TIMESTAMP_TYPE", "DECIMAL_TYPE"]
    row = iv_rows[0]
    assert row[:6] == ("1-2", "3 04:05:06.789000000", "3 00:00:00.000000000", None, None, None)
    assert str(row[6]) == "2024-01-01 10:00:00" and str(row[7]) == "1.500000000000000000"


def big_checksum(ep):
    conn = connect(ep)
    try:
        cur = conn.cursor(arraysize=10_000)
        started = time.monotonic()
        cur.execute(BIG_SQL)
        count, id_sum, digest = 0, 0, hashlib.sha256()
        while True:
            batch = cur.fetchmany(10_000)
            if not batch:
                break
            for row_id, s in batch:
                count += 1
                id_sum += row_id
                digest.update(s.encode())
                digest.update(b"\n")
        return count, id_sum, digest.hexdigest(), time.monotonic() - started
    finally:
        conn.close()


def expected_big():
    digest = hashlib.sha256()
    for i in range(BIG_ROWS):
        digest.update(f"{i * 7}\n".encode())
    return BIG_ROWS, BIG_ROWS * (BIG_ROWS - 1) // 2, digest.hexdigest()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ENDPOINT_NAMES)
def test_million_rows_by_count_and_checksum(endpoints, name):
    *got, seconds = big_checksum(endpoints[name])
    print(f"\n[{name}] PyHive fetched {BIG_ROWS} rows in {seconds:.1f} s")
    assert tuple(got) == expected_big()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", ENDPOINT_NAMES)
def test_async_execute_poll_and_cancel(endpoints, name):
    ep = endpoints[name]
    conn = connect(ep)
    try:
        cur = conn.cursor()
        cur.execute("select count(*) from range(0, 50000000000, 1, 4)", async_=True)
        state = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = cur.poll().operationState
            if state == ttypes.TOperationState.RUNNING_STATE:
                break
            assert state in (ttypes.TOperationState.INITIALIZED_STATE, ttypes.TOperationState.PENDING_STATE), state
            time.sleep(0.2)
        assert state == ttypes.TOperationState.RUNNING_STATE
        cur.cancel()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = cur.poll().operationState
            if state == ttypes.TOperationState.CANCELED_STATE:
                break
            time.sleep(0.2)
        assert state == ttypes.TOperationState.CANCELED_STATE
        # The session and the server stay usable after the cancel.
        cur2 = conn.cursor()
        cur2.execute("select 41 + 1")
        assert cur2.fetchall() == [(42,)]
    finally:
        conn.close()


def metadata(ep):
    """Every HS2 metadata call, through PyHive's Thrift client, results fetched by a cursor."""
    conn = connect(ep)
    try:
        session = conn.sessionHandle
        calls = {
            "catalogs": ttypes.TGetCatalogsReq(sessionHandle=session),
            "schemas": ttypes.TGetSchemasReq(sessionHandle=session),
            "tables": ttypes.TGetTablesReq(sessionHandle=session, schemaName="default", tableName="%"),
            "table_types": ttypes.TGetTableTypesReq(sessionHandle=session),
            "columns": ttypes.TGetColumnsReq(sessionHandle=session, schemaName="default", tableName="it_meta"),
            "functions": ttypes.TGetFunctionsReq(sessionHandle=session, functionName="upper"),
            "type_info": ttypes.TGetTypeInfoReq(sessionHandle=session),
        }
        out = {}
        for name, req in calls.items():
            method = getattr(conn.client, "Get" + "".join(p.capitalize() for p in name.split("_")))
            resp = method(req)
            assert resp.status.statusCode == ttypes.TStatusCode.SUCCESS_STATUS, (name, resp.status)
            cur = conn.cursor()
            cur._operationHandle = resp.operationHandle
            cur._state = cur._STATE_RUNNING
            out[name] = sorted(tuple(str(v) for v in row) for row in cur.fetchall())
        return out
    finally:
        conn.close()


@pytest.fixture(scope="module")
def meta_table(endpoints):
    _, _ = query(endpoints["direct"], "create table if not exists it_meta (id bigint, name string, price decimal(10,2)) using parquet")
    return "it_meta"


@pytest.mark.parametrize("name", ENDPOINT_NAMES)
def test_schemas_tables_columns_metadata(endpoints, meta_table, name):
    got = metadata(endpoints[name])
    assert got == direct(endpoints, "metadata", metadata)
    assert ("default",) in {row[:1] for row in got["schemas"]}
    assert any("it_meta" in row for row in got["tables"])
    assert {row[3] for row in got["columns"]} == {"id", "name", "price"}
    assert got["type_info"], "type info has rows"


# --- SQLAlchemy, as Superset uses it -------------------------------------------------------------

def sqlalchemy_engine(ep):
    from sqlalchemy import create_engine

    connect_args = {"auth": "NOSASL"} if ep.nosasl else {}
    return create_engine(f"hive://alice@127.0.0.1:{ep.port}/default", connect_args=connect_args)


def sqlalchemy_view(ep):
    from sqlalchemy import inspect, text

    engine = sqlalchemy_engine(ep)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("select id, cast(id as string) as s from range(5) order by id")).fetchall()
        inspector = inspect(engine)
        schemas = sorted(inspector.get_schema_names())
        tables = sorted(inspector.get_table_names(schema="default"))
        columns = [(c["name"], str(c["type"])) for c in inspector.get_columns("it_meta", schema="default")]
        return [tuple(r) for r in rows], schemas, tables, columns
    finally:
        engine.dispose()


@pytest.mark.parametrize("name", ENDPOINT_NAMES)
def test_sqlalchemy_query_and_inspector(endpoints, meta_table, name):
    got = sqlalchemy_view(endpoints[name])
    rows, schemas, tables, columns = got
    want_rows, want_schemas, direct_tables, want_columns = direct(endpoints, "sqlalchemy", sqlalchemy_view)
    assert (rows, schemas, columns) == (want_rows, want_schemas, want_columns)
    if name == "direct":
        # PyHive reads column 0 of Spark's SHOW TABLES: the namespace, not the name.
        assert "it_meta" not in tables
    else:
        # sparkgate answers Python clients with the names (see test_bi_clients.py).
        assert "it_meta" in tables and "default" not in tables
        assert direct_tables and set(direct_tables) == {"default"}
    assert rows == [(i, str(i)) for i in range(5)]
    assert "default" in schemas
    assert [c[0] for c in columns] == ["id", "name", "price"]


@pytest.mark.parametrize("name", ENDPOINT_NAMES)
def test_fetch_logs_falls_back_from_legacy_getlog(endpoints, name):
    """PyHive's fetch_logs() calls the legacy GetLog first and needs UNKNOWN_METHOD back to fall
    back to FetchResults(fetchType=1); any other answer breaks it."""
    conn = connect(endpoints[name])
    try:
        cur = conn.cursor()
        cur.execute("select 1")
        assert cur.fetchall() == [(1,)]
        logs = cur.fetch_logs()
        assert isinstance(logs, list)
        assert all(isinstance(line, str) for line in logs)
    finally:
        conn.close()
