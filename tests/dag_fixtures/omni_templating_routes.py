"""DAGs that feed UpdateOmniUserOperator by every templating route (loaded as a test DAG bundle)."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import DAG, task

from omni_provider.operators.update_user import UpdateOmniUserOperator

EMAIL = "Route.User@Example.com"


def _pick(region: str) -> dict[str, Any]:
    return {"email": EMAIL.lower(), "attributes": {"region": region, "cost_centre": 4100}}


with DAG(dag_id="omni_route_xcomarg", schedule=None, catchup=False) as xcomarg_dag:

    @task(multiple_outputs=True)
    def pick() -> dict[str, Any]:
        return _pick("xcomarg")

    picked = pick()
    UpdateOmniUserOperator(task_id="update", user_name=picked["email"], attributes=picked["attributes"])


with DAG(dag_id="omni_route_task_output", schedule=None, catchup=False) as output_dag:

    @task
    def attributes() -> dict[str, Any]:
        return {"region": "task-output"}

    UpdateOmniUserOperator(task_id="update", user_name=EMAIL, attributes=attributes())


for native in (False, True):
    with DAG(
        dag_id=f"omni_route_jinja_{'native' if native else 'plain'}",
        schedule=None,
        catchup=False,
        render_template_as_native_obj=native,
    ) as jinja_dag:

        @task(task_id="pick")
        def pick_for_jinja(region: str) -> dict[str, Any]:
            return _pick(region)

        upstream = pick_for_jinja("jinja-native" if native else "jinja-plain")
        # Jinja adds no dependency: the edge is set by hand.
        upstream >> UpdateOmniUserOperator(
            task_id="update",
            user_name="{{ ti.xcom_pull(task_ids='pick')['email'] }}",
            attributes="{{ ti.xcom_pull(task_ids='pick')['attributes'] }}",
        )
    globals()[jinja_dag.dag_id] = jinja_dag


with DAG(dag_id="omni_route_jinja_tojson", schedule=None, catchup=False) as tojson_dag:

    @task(task_id="pick")
    def pick_tojson() -> dict[str, Any]:
        return _pick("jinja-tojson")

    pick_tojson() >> UpdateOmniUserOperator(
        task_id="update",
        user_name="{{ ti.xcom_pull(task_ids='pick')['email'] }}",
        attributes="{{ ti.xcom_pull(task_ids='pick')['attributes'] | tojson }}",
    )


with DAG(
    dag_id="omni_route_params",
    schedule=None,
    catchup=False,
    params={"email": EMAIL, "region": "params"},
) as params_dag:
    UpdateOmniUserOperator(
        task_id="update",
        user_name="{{ params.email }}",
        attributes={"region": "{{ params.region }}"},  # rendering walks into the dict
    )


with DAG(dag_id="omni_route_expand_kwargs", schedule=None, catchup=False) as expand_dag:

    @task
    def users() -> list[dict[str, Any]]:
        return [
            {"user_name": EMAIL, "attributes": {"region": "mapped-1"}},
            {"user_name": "second@example.com", "attributes": {"region": "mapped-2"}},
        ]

    UpdateOmniUserOperator.partial(task_id="update").expand_kwargs(users())
