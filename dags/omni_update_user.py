"""Fix one Omni user from the Airflow UI: Trigger DAG -> fill in the form -> the user is updated.

Connection: ``omni_default`` (conn type "Omni": instance URL + Organization API key), from the UI or from
``AIRFLOW_CONN_OMNI_DEFAULT``. Start with the dry-run toggle on to see what would change.
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import DAG, Param

from omni_provider.operators.update_user import UpdateOmniUserOperator

#: name@domain.tld with no spaces: what the operator accepts (it also trims surrounding spaces).
EMAIL_PATTERN = r"^\s*[^\s@]+@[^\s@]+\.[^\s@]+\s*$"

with DAG(
    dag_id="omni_update_user",
    description="Update one Omni user's attributes from a form",
    schedule=None,
    catchup=False,
    tags=["omni", "example"],
    # Native rendering hands the operator the form's object and boolean as they are, not as strings.
    render_template_as_native_obj=True,
    params={
        # Airflow 3.3's trigger form does not check a pattern or format while typing (it sends the form
        # and shows the server's refusal), so the description says what is expected; the pattern and
        # format make that refusal happen before the run is created.
        "email": Param(
            type="string",
            format="email",
            pattern=EMAIL_PATTERN,
            title="User email",
            description="The user's email address in Omni, e.g. ada@example.com (one address, no spaces). "
            "Matched case-insensitively against Omni's userName.",
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
