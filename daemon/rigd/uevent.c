/* uevent.c — GPU hotplug on the live system: a udev monitor on the drm and kfd subsystems (and
 * PCI functions, which is how an NVIDIA GPU comes and goes). Any add, remove or change leads to a
 * rediscovery after a short quiet time; discovery, not the uevent, decides what is there. */
#include <errno.h>

#include <libudev.h>

#include "log.h"
#include "rigd.h"
#include "util.h"

struct uevent_state {
        struct udev *udev;
        struct udev_monitor *monitor;
        sd_event_source *source;
};

static int on_uevent(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct rigd *d = userdata;
        struct uevent_state *u = d->udev_monitor;
        struct udev_device *dev;
        bool is_gpu_event = false;
        while ((dev = udev_monitor_receive_device(u->monitor))) {
                const char *subsystem = udev_device_get_subsystem(dev);
                const char *action = udev_device_get_action(dev);
                const char *vendor = udev_device_get_sysattr_value(dev, "vendor");
                const char *class = udev_device_get_sysattr_value(dev, "class");
                /* Of PCI functions only display controllers (class 0x03xxxx) matter. */
                bool is_gpu = !subsystem || !streq(subsystem, "pci") || (class && startswith(class, "0x03"));
                log_debug("uevent %s %s %s (vendor %s)", action ? action : "?", subsystem ? subsystem : "?",
                          udev_device_get_syspath(dev), vendor ? vendor : "-");
                is_gpu_event |= is_gpu;
                udev_device_unref(dev);
        }
        if (is_gpu_event)
                rigd_rediscover_soon(d);
        return 0;
}

int uevent_start(struct rigd *d)
{
        struct uevent_state *u = calloc(1, sizeof(*u));
        if (!u)
                return log_warning_errno(ENOMEM, "hotplug");
        d->udev_monitor = u;
        u->udev = udev_new();
        if (u->udev)
                u->monitor = udev_monitor_new_from_netlink(u->udev, "udev");
        if (!u->monitor)
                return log_warning("no udev monitor: GPU hotplug is not followed (SIGHUP rediscovers)");
        udev_monitor_filter_add_match_subsystem_devtype(u->monitor, "drm", NULL);
        udev_monitor_filter_add_match_subsystem_devtype(u->monitor, "kfd", NULL);
        udev_monitor_filter_add_match_subsystem_devtype(u->monitor, "pci", NULL);
        int r = udev_monitor_enable_receiving(u->monitor);
        if (r >= 0)
                r = sd_event_add_io(d->event, &u->source, udev_monitor_get_fd(u->monitor), EPOLLIN, on_uevent, d);
        if (r < 0)
                return log_warning_errno(r, "following uevents: GPU hotplug is not followed (SIGHUP rediscovers)");
        return 0;
}

void uevent_stop(struct rigd *d)
{
        struct uevent_state *u = d->udev_monitor;
        if (!u)
                return;
        sd_event_source_disable_unref(u->source);
        udev_monitor_unref(u->monitor);
        udev_unref(u->udev);
        free(u);
        d->udev_monitor = NULL;
}
