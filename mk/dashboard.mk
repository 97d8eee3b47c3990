# The dashboard's charting library, uPlot, from npm at install time (never a CDN, never
# committed): the tarball is checked against its SHA-256, then its two dist files are
# served by mlambda from mlambda/dashboard/static/vendor/.
UPLOT_VERSION := 1.6.32
UPLOT_SHA256 := 4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d
UPLOT_DIR := mlambda/dashboard/static/vendor
UPLOT := $(UPLOT_DIR)/uPlot.iife.min.js

$(UPLOT): mk/dashboard.mk
	rm -rf $(UPLOT_DIR) && mkdir -p $(UPLOT_DIR)
	cd $(UPLOT_DIR) && npm pack --silent uplot@$(UPLOT_VERSION) >/dev/null \
	  && echo "$(UPLOT_SHA256)  uplot-$(UPLOT_VERSION).tgz" | sha256sum -c --quiet \
	  && tar xzf uplot-$(UPLOT_VERSION).tgz package/dist/uPlot.iife.min.js \
	     package/dist/uPlot.min.css package/LICENSE \
	  && mv package/dist/uPlot.iife.min.js package/dist/uPlot.min.css . \
	  && mv package/LICENSE uPlot.LICENSE && rm -rf package uplot-$(UPLOT_VERSION).tgz \
	  && touch uPlot.iife.min.js uPlot.min.css

install up test: $(UPLOT)
