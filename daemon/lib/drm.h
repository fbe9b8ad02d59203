/* drm.h — finding DRM cards: with libudev on the live system, from /sys/class/drm under a root.
 * Both give the same list: each card's name and its PCI device directory. */
#pragma once

#include <stddef.h>

struct machine;

struct drm_card {
        char name[16];                  /* "card0" */
        char device_dir[256];           /* the PCI device, relative to root: "sys/devices/pci0000:00/.../0000:03:00.0" */
        char pci[16];                   /* the directory's last component: "0000:03:00.0" */
        char driver[32];                /* "amdgpu", "" if unbound */
};

struct drm_cards {
        struct drm_card *cards;
        size_t n_cards;
};

/* Lists cards in PCI-address order. No /sys/class/drm is not an error (0 cards). */
int drm_cards_enumerate(const struct machine *m, struct drm_cards *out);
void drm_cards_free(struct drm_cards *c);

/* Finds "<device_dir>/drm/<prefix>N" (prefix "card" or "renderD"): name into buf and its dev_t
 * from the minor's sysfs "dev" file. -ENOENT if none. */
int drm_find_minor(const struct machine *m, const char *device_dir, const char *prefix,
                   char *name, size_t size, unsigned *major, unsigned *minor);
