// Calls the demo gateway through a client generated from its OpenAPI document (openapi-typescript
// types, openapi-fetch calls), once for JSON and once for CSV. Run by .ci/clients.sh, which
// generates ./api.d.ts, type-checks this file under --strict and runs the compiled program.
//
// The type annotations are the test as much as the assertions: `tsc` refuses this file unless
// getUsage's 200 is the JSON response alone (not a union with string) and getUsageCsv's is text.
import createClient from "openapi-fetch";
import type { components, paths } from "./api.js";

type Usage = components["schemas"]["UsageResponseSchema"];

const url = process.env.URL;
const token = process.env.TOKEN;
if (!url || !token) {
  throw new Error("URL and TOKEN (the demo gateway's address and a dev token) are required");
}
const client = createClient<paths>({
  baseUrl: url,
  headers: { Authorization: `Bearer ${token}` },
});

// The same query both ways: the last seven whole days (UTC), by day, in a zone typed as text.
const day = 86_400_000;
const today = new Date(Math.floor(Date.now() / day) * day);
const query = {
  start: new Date(today.getTime() - 7 * day).toISOString().slice(0, 10),
  end: today.toISOString().slice(0, 10),
  bucket: "day" as const,
  tz: "UTC",
};

const json = await client.GET("/v1/usage", { params: { query } });
if (json.response.status !== 200 || json.data === undefined) {
  throw new Error(`getUsage: HTTP ${json.response.status}: ${JSON.stringify(json.error)}`);
}
// Compiles only when `data` is the JSON response: `string` has no `totals`.
const usage: Usage = json.data;
const totals: number = json.data.totals.length;
if (!Array.isArray(usage.rows) || totals === 0 || usage.rows.length === 0) {
  throw new Error(`getUsage: expected totals and rows, got ${JSON.stringify(usage).slice(0, 300)}`);
}

const csv = await client.GET("/v1/usage.csv", { params: { query }, parseAs: "text" });
if (csv.response.status !== 200 || csv.data === undefined) {
  throw new Error(`getUsageCsv: HTTP ${csv.response.status}: ${JSON.stringify(csv.error)}`);
}
const text: string = csv.data;
const contentType = csv.response.headers.get("content-type") ?? "";
if (!contentType.startsWith("text/csv")) {
  throw new Error(`getUsageCsv: content type ${contentType}`);
}
const lines = text.trimEnd().split("\n");
if (!lines[0]?.startsWith("bucket_start,bucket_end,source,agent,")) {
  throw new Error(`getUsageCsv: unexpected header row ${lines[0]}`);
}
if (lines.length - 1 !== usage.rows.length) {
  throw new Error(`getUsageCsv: ${lines.length - 1} lines, getUsage ${usage.rows.length} rows`);
}

console.log(
  `TypeScript client: getUsage ${usage.rows.length} rows, ${totals} totals; ` +
    `getUsageCsv ${lines.length - 1} lines (${lines[0]})`,
);
