"""The official Python `kubernetes` client's CustomObjectsApi against Skiff, on the Book CRD
(books.library.skiff.test, made by the kube-rs half of tests/e2e_crd.rs): create, get, list
with a label selector, patch (merge), patch status, read the scale, delete. Prints `ok STEP`
per step, or `FAIL STEP: why` and exits non-zero.

Usage: custom_objects.py KUBECONFIG NAMESPACE
"""

import sys

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from steps import Steps

GROUP, VERSION, PLURAL = "library.skiff.test", "v1", "books"


def main():
    config.load_kube_config(sys.argv[1])
    ns = sys.argv[2]
    api = client.CustomObjectsApi()
    steps = Steps()
    step = steps.run

    body = {"apiVersion": GROUP + "/" + VERSION, "kind": "Book",
            "metadata": {"name": "from-python", "labels": {"by": "python"}},
            "spec": {"title": "Written in Python", "pages": 120}}

    def create():
        got = api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
        assert got["metadata"]["uid"], got

    def get():
        got = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "from-python")
        assert got["spec"]["title"] == "Written in Python", got

    def list_selected():
        got = api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, label_selector="by=python")
        names = [i["metadata"]["name"] for i in got["items"]]
        assert names == ["from-python"], names
        everything = api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
        assert "from-rust" in [i["metadata"]["name"] for i in everything["items"]], everything

    def patch():
        got = api.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "from-python", {"spec": {"pages": 130}})
        assert got["spec"]["pages"] == 130, got

    def patch_status():
        got = api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "from-python", {"status": {"copies": 3}})
        assert got["status"]["copies"] == 3, got

    def scale():
        got = api.get_namespaced_custom_object_scale(GROUP, VERSION, ns, PLURAL, "from-python")
        assert got["status"]["replicas"] == 3, got

    def invalid():
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL,
                                                dict(body, metadata={"name": "bad"}, spec={"title": "x", "pages": "many"}))
        except ApiException as e:
            assert e.status == 422, e
            assert "spec.pages" in e.body, e.body
            return
        raise AssertionError("an invalid Book was accepted")

    def delete():
        api.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "from-python")
        try:
            api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "from-python")
        except ApiException as e:
            assert e.status == 404, e
            return
        raise AssertionError("still there after delete")

    for name, f in [("create", create), ("get", get), ("list", list_selected), ("patch", patch),
                    ("patch-status", patch_status), ("scale", scale), ("invalid", invalid), ("delete", delete)]:
        step(name, f)
    steps.exit()


if __name__ == "__main__":
    main()
