/* drm.c — enumerating DRM cards by libudev (live) or by reading /sys/class/drm (under a root). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <libudev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drm.h"
#include "log.h"
#include "machine.h"
#include "sysfs.h"
#include "util.h"

/* "card0" yes; "card0-DP-1" (a connector) and "renderD128" no. */
static bool is_card_name(const char *name)
{
        if (!startswith(name, "card") || !name[4])
                return false;
        for (const char *p = name + 4; *p; p++)
                if (!isdigit((unsigned char)*p))
                        return false;
        return true;
}

static int add_card(struct drm_cards *out, const struct drm_card *c)
{
        struct drm_card *cards = realloc(out->cards, (out->n_cards + 1) * sizeof(*cards));
        if (!cards)
                return -ENOMEM;
        cards[out->n_cards++] = *c;
        out->cards = cards;
        return 0;
}

static void read_driver(const struct machine *m, struct drm_card *c)
{
        char rel[PATH_MAX], target[PATH_MAX];
        snprintf(rel, sizeof(rel), "%s/driver", c->device_dir);
        c->driver[0] = '\0';
        if (sysfs_resolve_link(m, rel, target, sizeof(target)) < 0)
                return;
        const char *base = strrchr(target, '/');
        strscpy(c->driver, base ? base + 1 : target, sizeof(c->driver));
}

/* device_dir from a card's own directory ".../0000:03:00.0/drm/card0". */
static int card_from_dir(const struct machine *m, const char *name, const char *card_dir, struct drm_card *c)
{
        memset(c, 0, sizeof(*c));
        strscpy(c->name, name, sizeof(c->name));
        const char *suffix = strstr(card_dir, "/drm/");
        if (!suffix || (size_t)(suffix - card_dir) >= sizeof(c->device_dir))
                return -EINVAL;         /* not under a device (a virtual card): not ours */
        memcpy(c->device_dir, card_dir, (size_t)(suffix - card_dir));
        c->device_dir[suffix - card_dir] = '\0';
        const char *base = strrchr(c->device_dir, '/');
        strscpy(c->pci, base ? base + 1 : c->device_dir, sizeof(c->pci));
        read_driver(m, c);
        return 0;
}

static int enumerate_sysfs(const struct machine *m, struct drm_cards *out)
{
        char path[PATH_MAX];
        if (!machine_path(m, "sys/class/drm", path, sizeof(path)))
                return -ENAMETOOLONG;
        _cleanup_closedir_ DIR *d = opendir(path);
        if (!d)
                return errno == ENOENT ? 0 : log_warning_errno(errno, "reading %s", path);

        for (struct dirent *e; (e = readdir(d)); ) {
                if (!is_card_name(e->d_name))
                        continue;
                char rel[PATH_MAX], card_dir[PATH_MAX];
                snprintf(rel, sizeof(rel), "sys/class/drm/%s", e->d_name);
                int r = sysfs_resolve_link(m, rel, card_dir, sizeof(card_dir));
                if (r < 0) {
                        log_warning_errno(r, "resolving %s/%s (the device vanished?)", machine_prefix(m), rel);
                        continue;
                }
                struct drm_card c;
                if (card_from_dir(m, e->d_name, card_dir, &c) < 0)
                        continue;
                r = add_card(out, &c);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int enumerate_udev(const struct machine *m, struct drm_cards *out)
{
        struct udev *udev = udev_new();
        if (!udev)
                return -ENOMEM;
        struct udev_enumerate *en = udev_enumerate_new(udev);
        if (!en) {
                udev_unref(udev);
                return -ENOMEM;
        }
        int r = udev_enumerate_add_match_subsystem(en, "drm");
        if (r >= 0)
                r = udev_enumerate_scan_devices(en);
        if (r < 0) {
                log_warning_errno(r, "enumerating drm devices with libudev");
                goto out;
        }

        struct udev_list_entry *entry;
        udev_list_entry_foreach(entry, udev_enumerate_get_list_entry(en)) {
                const char *syspath = udev_list_entry_get_name(entry);
                struct udev_device *dev = udev_device_new_from_syspath(udev, syspath);
                if (!dev)
                        continue;       /* vanished between scan and read */
                const char *sysname = udev_device_get_sysname(dev);
                struct drm_card c;
                if (sysname && is_card_name(sysname) &&
                    card_from_dir(m, sysname, udev_device_get_syspath(dev) + 1, &c) == 0)
                        r = add_card(out, &c);
                udev_device_unref(dev);
                if (r < 0)
                        goto out;
        }
        r = 0;
out:
        udev_enumerate_unref(en);
        udev_unref(udev);
        return r;
}

static int compare_cards(const void *a, const void *b)
{
        return strcmp(((const struct drm_card *)a)->pci, ((const struct drm_card *)b)->pci);
}

int drm_cards_enumerate(const struct machine *m, struct drm_cards *out)
{
        memset(out, 0, sizeof(*out));
        int r = m->is_live ? enumerate_udev(m, out) : enumerate_sysfs(m, out);
        if (r < 0) {
                drm_cards_free(out);
                return r;
        }
        if (out->n_cards > 0)
                qsort(out->cards, out->n_cards, sizeof(*out->cards), compare_cards);
        return 0;
}

void drm_cards_free(struct drm_cards *c)
{
        free(c->cards);
        c->cards = NULL;
        c->n_cards = 0;
}

int drm_find_minor(const struct machine *m, const char *device_dir, const char *prefix,
                   char *name, size_t size, unsigned *major, unsigned *minor)
{
        char rel[PATH_MAX], path[PATH_MAX];
        snprintf(rel, sizeof(rel), "%s/drm", device_dir);
        if (!machine_path(m, rel, path, sizeof(path)))
                return -ENAMETOOLONG;
        _cleanup_closedir_ DIR *d = opendir(path);
        if (!d)
                return -errno;

        size_t plen = strlen(prefix);
        for (struct dirent *e; (e = readdir(d)); ) {
                if (strncmp(e->d_name, prefix, plen) != 0 || !e->d_name[plen])
                        continue;
                bool digits = true;
                for (const char *p = e->d_name + plen; *p; p++)
                        digits &= isdigit((unsigned char)*p) != 0;
                if (!digits)
                        continue;

                char dev_rel[PATH_MAX], dev[32];
                snprintf(dev_rel, sizeof(dev_rel), "%s/%s/dev", rel, e->d_name);
                *major = *minor = 0;
                int r = sysfs_read_line(m, dev_rel, dev, sizeof(dev));
                if (r < 0)
                        log_warning_errno(r, "reading %s/%s", machine_prefix(m), dev_rel);
                else if (!parse_devnum(dev, major, minor))
                        log_warning("reading %s/%s: \"%s\" is not MAJOR:MINOR", machine_prefix(m), dev_rel, dev);
                strscpy(name, e->d_name, size);
                return 0;
        }
        return -ENOENT;
}
