import logging
from typing import Any
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator as S

class TI:
    def __init__(self): self.pushed = {}
    def xcom_push(self, key: str, value: Any) -> None: self.pushed[key] = value

def test_x(omni_connection, caplog, capfd):
    caplog.set_level(logging.INFO)
    omni_connection.state.seed_users(5)
    ti = TI()
    op = S(task_id='x', attributes=['region'], rows=[{"userName": "USER00001@example.com", "region": "eu"}, {"userName": "nobody@example.com", "region": "eu"}], max_failed_rows=5, progress_every=0)
    out = op.execute({"ti": ti, "run_id": "r1"})
    print(out)
    print("RECORDS", [(r.name, r.levelname, r.getMessage()) for r in caplog.records])
    o, e = capfd.readouterr()
    print("OUT", o[-3000:], "ERR", e[-3000:])
    assert 0
