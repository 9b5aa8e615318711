"""An I/O-bound task over the rows of orders.csv: each row waits on a (simulated) remote
price check, then returns the order's total. Waiting releases the GIL, so a worker thread's
wall time is mostly idle: the harness shows how much batching still matters then.
"""

import time

# Seconds one row waits, standing in for a call to a remote service (a database, an HTTP API).
LOOKUP_S = 0.002


def order_total(row: dict) -> dict:
    """One row (a dict of the CSV's columns) in, one result out."""
    time.sleep(LOOKUP_S)
    return {"order_id": row["order_id"], "total": round(row["quantity"] * row["unit_price"], 2)}
