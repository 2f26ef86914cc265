# The Helm chart in deploy/helm/gateway: lint, render and check it against
# the gateway binary. Included from the top-level Makefile, which defines
# `build` (bin/gateway).
GO ?= go
# helm is built from source at this version (scripts/helm.sh).
HELM_VERSION ?= v3.22.0

.PHONY: helm helm-check

# Builds helm into .cache/tools/helm/ unless the cached one has HELM_VERSION.
# Several minutes on two cores with cold Go caches.
helm:
	HELM_VERSION=$(HELM_VERSION) GO=$(GO) scripts/helm.sh install

# helm lint and helm template for every mode of the chart, then the chart's
# Go test (deploy/helm) with that helm and bin/gateway.
helm-check: build
	HELM_VERSION=$(HELM_VERSION) GO=$(GO) GATEWAY_BIN=$(CURDIR)/bin/gateway scripts/helm.sh check
