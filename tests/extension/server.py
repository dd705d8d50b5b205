"""A test program for Skiff's API extension tests: a CRD conversion webhook and an
aggregated (extension) API server, over HTTPS.

Usage: server.py CERT KEY CLIENT_CA LOG   -- prints its port, then serves until killed.

Conversion (POST /convert, ConversionReview v1) between the two versions of
widgets.stable.skiff.test:
  v1  spec: {size: <int>, color, replicas, maxReplicas}
  v1beta1  spec: {dimensions: {size: <int>}, color, replicas, maxReplicas}
Objects of other kinds, or an object labelled conversion=fail, fail the review.

Aggregated API (group wardle.skiff.test, version v1alpha1, namespaced resource flunders):
  GET /apis/wardle.skiff.test/v1alpha1                       APIResourceList
  GET /apis/wardle.skiff.test/v1alpha1/namespaces/NS/flunders[/NAME]
  GET /apis/wardle.skiff.test/v1alpha1/flunders
A request must come with a client certificate issued by CLIENT_CA whose CN is
front-proxy-client (else 401); the flunders answered name the X-Remote-User and
X-Remote-Group headers the api server sent. Every request is logged to LOG as one JSON
line: method, path, user, groups, extra, client CN.
"""

import http.server
import json
import ssl
import sys
import threading

GROUP, VERSION = "wardle.skiff.test", "v1alpha1"


def convert(obj, desired):
    if obj.get("kind") != "Widget":
        raise ValueError("unexpected kind %r" % obj.get("kind"))
    if ((obj.get("metadata") or {}).get("labels") or {}).get("conversion") == "fail":
        raise ValueError("refusing to convert an object labelled conversion=fail")
    out = json.loads(json.dumps(obj))
    spec = out.setdefault("spec", {})
    current = obj.get("apiVersion", "")
    if current.endswith("/v1") and desired.endswith("/v1beta1"):
        if "size" in spec:
            spec["dimensions"] = {"size": spec.pop("size")}
    elif current.endswith("/v1beta1") and desired.endswith("/v1"):
        dims = spec.pop("dimensions", None) or {}
        if "size" in dims:
            spec["size"] = dims["size"]
    out["apiVersion"] = desired
    # A label shows the webhook did the work.
    out.setdefault("metadata", {}).setdefault("labels", {})["converted-by"] = "test-webhook"
    return out


class Handler(http.server.BaseHTTPRequestHandler):
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def client_cn(self):
        cert = self.connection.getpeercert()
        if not cert:
            return None
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return value
        return None

    def log(self, **fields):
        with Handler.lock:
            with open(sys.argv[4], "a") as f:
                f.write(json.dumps(fields) + "\n")

    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/convert":
            return self.answer(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404})
        review = json.loads(body)
        req = review["request"]
        self.log(method="POST", path=self.path, objects=len(req["objects"]), desired=req["desiredAPIVersion"])
        response = {"uid": req["uid"]}
        try:
            response["convertedObjects"] = [convert(o, req["desiredAPIVersion"]) for o in req["objects"]]
            response["result"] = {"status": "Success"}
        except ValueError as e:
            response["result"] = {"status": "Failure", "message": str(e)}
        self.answer(200, {"apiVersion": review["apiVersion"], "kind": "ConversionReview", "response": response})

    def do_GET(self):
        cn = self.client_cn()
        user = self.headers.get("X-Remote-User")
        groups = self.headers.get_all("X-Remote-Group") or []
        extra = {k: v for k, v in self.headers.items() if k.lower().startswith("x-remote-extra-")}
        self.log(method="GET", path=self.path, user=user, groups=groups, extra=extra, cn=cn)
        if cn != "front-proxy-client":
            return self.answer(401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                     "message": "a front-proxy client certificate is required", "reason": "Unauthorized", "code": 401})
        path = self.path.split("?")[0].rstrip("/")
        prefix = "/apis/%s/%s" % (GROUP, VERSION)
        if path == prefix:
            return self.answer(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP + "/" + VERSION,
                                     "resources": [{"name": "flunders", "singularName": "flunder", "namespaced": True,
                                                    "kind": "Flunder", "verbs": ["get", "list"], "shortNames": ["fl"]}]})
        rest = path[len(prefix):].strip("/").split("/") if path.startswith(prefix) else []

        def flunder(ns, name):
            return {"kind": "Flunder", "apiVersion": GROUP + "/" + VERSION,
                    "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-01-01T00:00:00Z",
                                 "annotations": {"requested-by": user or "", "requested-groups": ",".join(groups)}},
                    "spec": {"reference": "asked by " + (user or "nobody")}}

        if rest == ["flunders"]:
            items = [flunder("default", "alpha"), flunder("default", "beta")]
        elif len(rest) == 3 and rest[0] == "namespaces" and rest[2] == "flunders":
            items = [flunder(rest[1], "alpha"), flunder(rest[1], "beta")]
        elif len(rest) == 4 and rest[0] == "namespaces" and rest[2] == "flunders":
            if rest[3] not in ("alpha", "beta"):
                return self.answer(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                                         "message": 'flunders.wardle.skiff.test "%s" not found' % rest[3], "code": 404})
            return self.answer(200, flunder(rest[1], rest[3]))
        else:
            return self.answer(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})
        self.answer(200, {"kind": "FlunderList", "apiVersion": GROUP + "/" + VERSION, "metadata": {"resourceVersion": "1"}, "items": items})


def main():
    cert, key, client_ca = sys.argv[1], sys.argv[2], sys.argv[3]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(client_ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
