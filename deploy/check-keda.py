"""Validates KEDA resources against KEDA's CRD schemas, as generated into the PyPI package
cloudcoil-models-keda (pydantic models of KEDA's CRDs at its version). Strict: a resource must
parse, and dumping the parsed model must give the document back, so a misspelt or unknown field
(which the models would ignore) fails too. Usage: python check-keda.py FILE.yaml"""
import sys

import yaml
from cloudcoil.models.keda import v1alpha1

errors = 0
with open(sys.argv[1]) as f:
    docs = [d for d in yaml.safe_load_all(f) if d]
for doc in docs:
    kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
    model = getattr(v1alpha1, kind or "", None)
    if doc.get("apiVersion") != "keda.sh/v1alpha1" or model is None:
        print(f"{kind}/{name}: not a keda.sh/v1alpha1 kind"); errors += 1; continue
    try:
        parsed = model.model_validate(doc)
    except Exception as e:  # pydantic.ValidationError
        print(f"{kind}/{name}: {e}"); errors += 1; continue
    back = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    if back != doc:
        print(f"{kind}/{name}: fields the schema does not know: {doc} != {back}"); errors += 1
print(f"{len(docs)} resources, {errors} errors")
sys.exit(1 if errors else 0)
