"""Calls the demo gateway through the Python client that openapi-python-client generated from its
OpenAPI document with default settings, once for JSON and once for CSV. Run by .ci/clients.sh
with the generated package on PYTHONPATH and the demo's address and dev token in URL and TOKEN.
"""

import datetime as dt
import os

import httpx
from usage_gateway_client import AuthenticatedClient
from usage_gateway_client.api.usage import get_usage, get_usage_csv
from usage_gateway_client.models import Bucket, UsageResponseSchema

client = AuthenticatedClient(
    base_url=os.environ["URL"], token=os.environ["TOKEN"], timeout=httpx.Timeout(60.0)
)
# The same query both ways: the last seven whole days (UTC), by day, in a zone given as text.
today = dt.datetime.now(dt.timezone.utc).date()
query = dict(start=today - dt.timedelta(days=7), end=today, bucket=Bucket.DAY, tz="UTC")

answer = get_usage.sync_detailed(client=client, **query)
assert answer.status_code == 200, (answer.status_code, answer.content[:300])
usage = answer.parsed
assert isinstance(usage, UsageResponseSchema), type(usage)
assert usage.totals and usage.rows, usage.to_dict()

answer = get_usage_csv.sync_detailed(client=client, **query)
assert answer.status_code == 200, (answer.status_code, answer.content[:300])
assert answer.headers["content-type"].startswith("text/csv"), answer.headers
text = answer.parsed
assert isinstance(text, str), type(text)
lines = text.splitlines()
assert lines[0].startswith("bucket_start,bucket_end,source,agent,"), lines[0]
assert len(lines) - 1 == len(usage.rows), (len(lines) - 1, len(usage.rows))

print(
    f"Python client: getUsage {len(usage.rows)} rows, {len(usage.totals)} totals; "
    f"getUsageCsv {len(lines) - 1} lines ({lines[0]})"
)
