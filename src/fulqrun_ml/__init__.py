"""FulQrun ML: the deep-learning brain of the FulQrun sales CRM.

The spine: CRM tables -> point-in-time snapshots -> FeatureSpec -> Lightning model -> ONNX -> Triton -> client.
"""

__version__ = "0.1.0"

from fulqrun_ml import _import_guard

_import_guard.install()
