"""ops.deploy_check validates custom resources against a CRD's openAPIV3Schema the way the API server
reads it (served versions only, unknown fields of structural schemas refused, int-or-string, nullable)."""

from ops.deploy_check import load_crd_schemas, validate

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
spec:
  group: example.io
  names: {kind: Widget}
  versions:
    - name: v1
      served: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            spec:
              type: object
              required: [replicas]
              properties:
                replicas: {type: integer, minimum: 1}
                size: {x-kubernetes-int-or-string: true}
                note: {type: string, nullable: true}
                config: {type: object, x-kubernetes-preserve-unknown-fields: true}
    - name: v1beta1
      served: false
      schema: {openAPIV3Schema: {type: object}}
"""


def widget(spec: dict, version: str = "v1") -> dict:
    return {"apiVersion": f"example.io/{version}", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}


def test_validation_follows_the_crd_schema(tmp_path):
    (tmp_path / "crd.yaml").write_text(CRD)
    schemas = load_crd_schemas(tmp_path)
    ok = widget({"replicas": 2, "size": "1Gi", "note": None, "config": {"anything": 1}})
    assert validate([ok, widget({"replicas": 1, "size": 3})], schemas) == []
    errors = validate([widget({"replicas": 0}), widget({"size": 1}), widget({"replicas": 1, "typo": 1}),
                       widget({"replicas": 1}, version="v1beta1")], schemas)
    assert len(errors) == 4, errors
    assert "not a served version" in errors[-1]
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    assert validate([other], schemas) == [], "objects of other groups are not this check's business"
