"""A real local Kubernetes control plane (etcd, apiserver, controllers, kwok) run as processes."""
