"""An admission webhook server for Skiff's end-to-end tests (HTTPS, AdmissionReview v1).

Usage: server.py CERT KEY LOG   -- prints its port, then serves until killed.

  /mutate-a   adds label a=1; once label b exists (a later webhook added it), also
              a-saw-b=true: with reinvocationPolicy IfNeeded it is called again and sees it
  /mutate-b   adds label b=1
  /validate   refuses pods labelled deny=true (403, with a message); allows the rest with a
              warning and an audit annotation
Every request is appended to LOG as one JSON line: path, uid, operation, name, labels.
"""

import base64
import http.server
import json
import ssl
import sys
import threading


def labels_patch(obj, add):
    labels = (obj.get("metadata") or {}).get("labels")
    ops = []
    if labels is None:
        ops.append({"op": "add", "path": "/metadata/labels", "value": {}})
        labels = {}
    for k, v in add.items():
        if labels.get(k) != v:
            ops.append({"op": "add", "path": "/metadata/labels/" + k.replace("~", "~0").replace("/", "~1"), "value": v})
    return ops


class Handler(http.server.BaseHTTPRequestHandler):
    log_lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        review = json.loads(body)
        req = review["request"]
        obj = req.get("object") or {}
        labels = (obj.get("metadata") or {}).get("labels") or {}
        with Handler.log_lock:
            with open(sys.argv[3], "a") as log:
                log.write(json.dumps({"path": self.path, "uid": req["uid"], "operation": req["operation"],
                                      "name": req.get("name"), "labels": labels}) + "\n")
        response = {"uid": req["uid"], "allowed": True}
        patch = None
        if self.path == "/mutate-a":
            add = {"a": "1"}
            if "b" in labels:
                add["a-saw-b"] = "true"
            patch = labels_patch(obj, add)
        elif self.path == "/mutate-b":
            patch = labels_patch(obj, {"b": "1"})
        elif self.path == "/validate":
            if labels.get("deny") == "true":
                response["allowed"] = False
                response["status"] = {"code": 403, "reason": "Forbidden",
                                      "message": "pods labelled deny=true are refused"}
            else:
                response["warnings"] = ["validated by the test webhook"]
                response["auditAnnotations"] = {"checked": "yes"}
        if patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        out = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                          "response": response}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
