"""The official Python `kubernetes` client creating a Secret whose data is what Python's
`base64.encodebytes` writes (a line break every 76 characters, and at the end), as Go's decoder
accepts it; the Secret must read back with the same bytes, as standard base64. Prints
`ok STEP` per step, or `FAIL STEP: why` and exits non-zero.

Usage: secret_base64.py KUBECONFIG NAMESPACE
"""

import base64
import sys

from kubernetes import client, config

from steps import Steps


def main():
    config.load_kube_config(sys.argv[1])
    ns = sys.argv[2]
    api = client.CoreV1Api()
    payload = bytes(range(256)) * 2
    wrapped = base64.encodebytes(payload).decode()
    assert "\n" in wrapped[:-1], "encodebytes wraps long values"
    steps = Steps()
    step = steps.run

    def create():
        body = client.V1Secret(metadata=client.V1ObjectMeta(name="wrapped-py"),
                               data={"blob": wrapped})
        api.create_namespaced_secret(ns, body)

    def read_back():
        got = api.read_namespaced_secret("wrapped-py", ns)
        value = got.data["blob"]
        assert "\n" not in value, "written back as standard base64: %r" % value[:90]
        assert value == base64.b64encode(payload).decode(), "canonical base64"
        assert base64.b64decode(value) == payload, "same bytes"

    step("create", create)
    step("read-back", read_back)
    steps.exit()


if __name__ == "__main__":
    main()
