// libdalle.so is linked from this target: it carries the link flags that put the
// Swift runtime inside the library (-static-stdlib) and turn any undefined symbol
// into a link error (-z defs). The C API itself lives in DalleCAPI, which the
// tests import directly.
@_exported import DalleCAPI
