# nginx in front of the gateway for integration/edge_test.go. Included from
# the top-level Makefile after mk/peers.mk.

.PHONY: nginx

# Installs nginx into .cache/peers/nginx (Debian's package, extracted) unless
# it is on PATH or in /usr/sbin.
nginx:
	scripts/nginx.sh install

# The integration tests need it too: one more prerequisite for the target
# that mk/peers.mk defines.
integration: nginx
