/* The lanes of a 16-lane vector that hold the first `lanes` values (all 16 from 16 on, none below 1):
 * a 32-column panel's halves take lane_mask(columns) and lane_mask(columns - 16), so a partial last
 * panel loads and stores only its own columns. */
#ifndef LIBDALLE_LANE_MASK_H
#define LIBDALLE_LANE_MASK_H

#include <stddef.h>
#include <stdint.h>

static inline uint16_t lane_mask(ptrdiff_t lanes) {
    return lanes >= 16 ? 0xffff : lanes <= 0 ? 0 : (uint16_t)((1u << lanes) - 1);
}

#endif
