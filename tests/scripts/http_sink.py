"""A stand-in for the HTTP endpoints the agent's outputs post to, for
tests/tests/http.rs: a plain NDJSON collector, Splunk's HTTP Event Collector
(/services/collector/event) and Elasticsearch's _bulk API (with its
idempotent `create`: an _id it has seen is a 409 conflict).

Usage: http_sink.py PORT LOG [CERT KEY] (HTTPS with CERT and KEY). Every request is appended to LOG as one JSON
line: its path, its Authorization and Content-Encoding headers, and the
records it carried (each record's JSON, unwrapped from the HEC envelope or
the _bulk action). Elastic's seen ids are kept in LOG.ids so that a restarted
server still knows them, as a real index would.
"""

import gzip
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
LOG = sys.argv[2]
IDS = LOG + ".ids"


def seen_ids():
    if not os.path.exists(IDS):
        return set()
    with open(IDS) as f:
        return set(line.strip() for line in f)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        encoding = self.headers.get("Content-Encoding")
        if encoding == "gzip":
            body = gzip.decompress(body)
        lines = [l for l in body.decode("utf-8").split("\n") if l.strip()]
        answer = {}
        records = []
        if self.path.endswith("/_bulk"):
            ids = seen_ids()
            items = []
            for action, source in zip(lines[0::2], lines[1::2]):
                _id = json.loads(action)["create"].get("_id")
                if _id in ids:
                    items.append({"create": {"_id": _id, "status": 409}})
                    continue
                ids.add(_id)
                with open(IDS, "a") as f:
                    f.write(f"{_id}\n")
                records.append(json.loads(source))
                items.append({"create": {"_id": _id, "status": 201}})
            answer = {"took": 1, "errors": any(i["create"]["status"] != 201 for i in items), "items": items}
        elif self.path == "/services/collector/event":
            for line in lines:
                envelope = json.loads(line)
                assert envelope["source"] == "weightwarden", envelope
                records.append(envelope["event"])
            answer = {"text": "Success", "code": 0}
        else:
            records = [json.loads(l) for l in lines]
        with open(LOG, "a") as f:
            f.write(json.dumps({
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "encoding": encoding,
                "records": records,
            }) + "\n")
        out = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


ThreadingHTTPServer.allow_reuse_address = True
server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
if len(sys.argv) > 4:
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[3], sys.argv[4])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
