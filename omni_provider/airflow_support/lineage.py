"""Lineage of a sync: what it read (a SQL table or an upstream task) and what it wrote (Omni's users).

Three ways the same facts reach the outside, none of which may break a sync:

* hook-level lineage (Airflow's hook lineage collector; datasets on Airflow 2.11, through common-compat),
  read by any registered hook lineage reader such as the OpenLineage provider;
* OpenLineage facets (``get_openlineage_facets_on_complete``) when the openlineage provider is installed;
* an asset event on the Omni users asset when the task declares it as an outlet, so downstream DAGs can
  be scheduled on "Omni attributes were synced" (``omni_users_asset``).

The Omni users dataset is ``omni://<host>/users``: one per Omni instance, the host as in its URL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from omni_provider import _compat

log = logging.getLogger(__name__)

OMNI_SCHEME = "omni"

#: ``FROM <table>`` of a single-table query; anything more involved is reported at connection level.
_FROM = re.compile(r"\bfrom\s+([A-Za-z_][\w$]*(?:\.[A-Za-z_][\w$]*){0,2})", re.IGNORECASE)
_JOIN = re.compile(r"\bjoin\b", re.IGNORECASE)


def omni_users_uri(base_url: str) -> str:
    """``omni://<host>/users`` for an Omni instance URL (with or without scheme, port or ``/api``)."""
    parts = urlsplit(base_url if "://" in base_url else f"https://{base_url}")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError(f"no host in the Omni instance URL {base_url!r}")
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{OMNI_SCHEME}://{netloc}/users"


def omni_users_asset(host: str) -> Any:
    """The Omni users asset (a ``Dataset`` on Airflow 2.11) of an instance, for ``outlets=[...]`` on the
    sync task and ``schedule=[...]`` on the DAGs that follow it. ``host`` as in the connection:
    ``acme.omniapp.co`` or ``https://acme.omniapp.co``."""
    return _compat.Asset(uri=omni_users_uri(host))


def sql_table(sql: str) -> str | None:
    """The one table of a single-table query (``SELECT ... FROM schema.table WHERE ...``), else None."""
    tables = {match.lower() for match in _FROM.findall(sql)}
    if len(tables) != 1 or _JOIN.search(sql):
        return None
    return str(tables.pop())


def sql_source_uri(conn: Any, sql: str | None) -> str:
    """A URI for the data a query read: ``<conn type>://<host>[:port]/[<schema>/]<table>``, or the
    connection's database when the table cannot be told from the query. Never holds login or password."""
    scheme = re.sub(r"[^a-z0-9+.-]", "-", str(conn.conn_type or "sql").lower())
    host = str(conn.host or "")
    authority = f"{host}:{conn.port}" if conn.port and not host.startswith("/") else host
    path = [part for part in (conn.schema, sql_table(sql) if sql else None) if part]
    tail = "/".join(str(p) for p in path)
    if host.startswith("/"):  # a file database (SQLite, DuckDB): the file is the authority's path
        return f"{scheme}://{authority}" + (f"/{tail}" if tail else "")
    return f"{scheme}://{authority}/{tail}"


@dataclass(frozen=True)
class SyncLineage:
    """What one sync read and wrote, as asset URIs."""

    inputs: tuple[str, ...]
    #: None on a dry run: nothing was written.
    output: str | None
    attributes: tuple[str, ...] = ()
    #: What ``attributes`` are: user attributes, or the groups whose membership is synced.
    kind: str = "user_attribute"
    #: Upstream tasks whose XCom the rows came from, when no dataset could be named for them.
    upstream_task_ids: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


def describe_sync(
    *,
    omni_base_url: str,
    sql: str | None,
    sql_conn_id: str | None,
    task: Any,
    attributes: Sequence[str],
    dry_run: bool,
    kind: str = "user_attribute",
) -> SyncLineage:
    """The lineage of ``task``'s sync. Rows from an upstream SQL task (``SQLExecuteQueryOperator``: ``sql``
    and ``conn_id``) name that task's table; other upstream tasks are named by task id."""
    inputs: list[str] = []
    upstream_ids: list[str] = []
    if sql is not None and sql_conn_id:
        inputs.append(sql_source_uri(_compat.BaseHook.get_connection(sql_conn_id), sql))
    else:
        # A task outside a DAG (called directly, as in tests) has no upstream; Airflow 2 raises on asking.
        for upstream in task.upstream_list if task.has_dag() else ():
            task_sql, conn_id = getattr(upstream, "sql", None), getattr(upstream, "conn_id", None)
            if isinstance(task_sql, str) and isinstance(conn_id, str) and conn_id:
                inputs.append(sql_source_uri(_compat.BaseHook.get_connection(conn_id), task_sql))
            else:
                upstream_ids.append(str(upstream.task_id))
    return SyncLineage(
        inputs=tuple(dict.fromkeys(inputs)),
        output=None if dry_run else omni_users_uri(omni_base_url),
        attributes=tuple(attributes),
        kind=kind,
        upstream_task_ids=tuple(upstream_ids),
    )


def report_sync_lineage(
    hook: Any,
    omni_base_url: str,
    *,
    sql: str | None,
    sql_conn_id: str | None,
    task: Any,
    attributes: Sequence[str],
    dry_run: bool,
    kind: str = "user_attribute",
) -> SyncLineage | None:
    """Describe the sync and hand it to Airflow's hook lineage collector (a no-op unless a reader, such as
    the OpenLineage provider, is registered). Returns the description, None if it could not be made."""
    try:
        lineage = describe_sync(
            omni_base_url=omni_base_url,
            sql=sql,
            sql_conn_id=sql_conn_id,
            task=task,
            attributes=attributes,
            dry_run=dry_run,
            kind=kind,
        )
        collector = _compat.hook_lineage_collector()
        if collector is not None:
            for uri in lineage.inputs:
                collector.add_input_asset(context=hook, uri=uri)
            if lineage.output is not None:
                collector.add_output_asset(context=hook, uri=lineage.output)
            if lineage.upstream_task_ids:
                collector.add_extra(
                    context=hook, key="omni_sync_upstream_tasks", value=list(lineage.upstream_task_ids)
                )
    except Exception:  # lineage is a report about the sync; it must never fail the sync
        log.warning("Could not report the lineage of the Omni sync", exc_info=True)
        return None
    return lineage


def _dataset(uri: str, facets: Mapping[str, Any] | None = None) -> Any:
    """An OpenLineage dataset for an asset URI: namespace ``scheme://authority``, name the path."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    scheme, _, rest = uri.partition("://")
    authority, slash, path = rest.partition("/")
    if not authority:  # file URIs (sqlite:///path/db/table): the path is the name
        return Dataset(namespace=f"{scheme}://", name=f"/{path}", facets=dict(facets or {}))
    return Dataset(namespace=f"{scheme}://{authority}", name=path if slash else "", facets=dict(facets or {}))


def openlineage_facets(lineage: SyncLineage | None) -> Any:
    """``OperatorLineage`` for the OpenLineage provider: the inputs, and Omni's users as the output with
    the synced attributes as its schema. Only called by that provider, so its imports are here."""
    from airflow.providers.common.compat.openlineage.facet import SchemaDatasetFacet, SchemaDatasetFacetFields
    from airflow.providers.openlineage.extractors import OperatorLineage

    if lineage is None:  # the task failed before it knew its sources
        return OperatorLineage()
    outputs = []
    if lineage.output is not None:
        schema = SchemaDatasetFacet(
            fields=[SchemaDatasetFacetFields(name=name, type=lineage.kind) for name in lineage.attributes]
        )
        outputs.append(_dataset(lineage.output, {"schema": schema}))
    return OperatorLineage(inputs=[_dataset(uri) for uri in lineage.inputs], outputs=outputs)


def annotate_asset_events(
    context: Mapping[str, Any], outlets: Iterable[Any], omni_base_url: str, summary: Mapping[str, Any]
) -> list[str]:
    """Put the sync's counts on the asset event of each Omni users outlet (``extra``), so a downstream
    DAG knows what was synced; returns the URIs annotated. Airflow emits the event when the task succeeds."""
    uri = omni_users_uri(omni_base_url)
    events = context.get("outlet_events")
    annotated: list[str] = []
    for outlet in outlets:
        outlet_uri = getattr(outlet, "uri", None)
        if not isinstance(outlet_uri, str) or not outlet_uri.startswith(f"{OMNI_SCHEME}://"):
            continue
        if outlet_uri != uri:
            log.warning(
                "Outlet %s names another Omni instance than the connection (%s): its event will say "
                "attributes were synced there",
                outlet_uri,
                uri,
            )
        if summary.get("dry_run"):
            log.warning(
                "Dry run: the asset event on %s still fires when the task succeeds; its extra "
                "says dry_run=true",
                outlet_uri,
            )
        if events is None:
            log.warning(
                "This Airflow gives no outlet_events in the context; the event on %s has no extra", outlet_uri
            )
            continue
        try:
            events[outlet].extra = {
                "omni_users": uri,
                "dry_run": bool(summary.get("dry_run")),
                "mode": summary.get("mode"),
                "outcomes": dict(summary.get("outcomes") or {}),
            }
        except Exception:  # the event still fires without the counts; the sync itself succeeded
            log.warning("Could not put the sync counts on the asset event of %s", outlet_uri, exc_info=True)
            continue
        annotated.append(outlet_uri)
    return annotated
