"""modeldeploy: reproducible TorchServe archives, served and rolled out safely on Kubernetes."""

__version__ = "0.1.0"

GROUP = "modeldeploy.dev"
VERSION = "v1alpha1"
PLURAL = "modeldeployments"
KIND = "ModelDeployment"
