#define _GNU_SOURCE 1
#include <dlfcn.h>
