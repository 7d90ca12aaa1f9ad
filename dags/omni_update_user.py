"""Fix one Omni user from the Airflow UI: Trigger DAG -> fill in the form -> the user is updated.

Connection: ``omni_default`` (conn type "Omni": instance URL + Organization API key), from the UI or from
``AIRFLOW_CONN_OMNI_DEFAULT``. Start with the dry-run toggle on to see what would change.
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import DAG, Param

from omni_provider.operators.update_user import UpdateOmniUserOperator

with DAG(
    dag_id="omni_update_user",
    description="Update one Omni user's attributes from a form",
    schedule=None,
    catchup=False,
    tags=["omni", "example"],
    # Native rendering hands the operator the form's object and boolean as they are, not as strings.
    render_template_as_native_obj=True,
    params={
        "email": Param(
            type="string",
            format="email",
            title="User email",
            description="Matched case-insensitively against Omni's userName.",
        ),
        "attributes": Param(
            {"region": "EMEA"},
            type="object",
            title="Attributes",
            description='Attribute reference name -> value, e.g. {"region": "EMEA", "cost_centre": 4100}. '
            "null unsets an attribute; attributes not named here are left alone.",
        ),
        "display_name": Param(
            None, type=["null", "string"], title="Display name", description="Leave empty to keep it."
        ),
        "dry_run": Param(True, type="boolean", title="Dry run", description="Report the change only."),
    },
) as dag:
    UpdateOmniUserOperator(
        task_id="update_user",
        user_name="{{ params.email }}",
        attributes="{{ params.attributes }}",
        display_name="{{ params.display_name }}",
        dry_run="{{ params.dry_run }}",
    )
