/* server.c — the Unix-socket server of DESIGN §4.3: the listening socket (systemd's or our own),
 * connections, who the peer is (SO_PEERCRED, SO_PEERGROUPS), lines in and out with their bounds.
 * What each request does is requests.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "rigd.h"
#include "util.h"

static void conn_close(struct conn *c);

static int on_close_later(sd_event_source *s, void *userdata)
{
        conn_close(userdata);   /* which drops this source too: sd-event pins it while it runs */
        return 0;
}

/* Writes what is queued; keeps the rest for when the socket is writable. */
static int conn_flush(struct conn *c)
{
        while (c->out_len > 0) {
                ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                if (n < 0)
                        return -errno;
                memmove(c->out, c->out + n, c->out_len - (size_t)n);
                c->out_len -= (size_t)n;
        }
        return sd_event_source_set_io_events(c->io, EPOLLIN | (c->out_len ? EPOLLOUT : 0));
}

/* Queues one line (consumed) for the peer. A peer that lets more than RIGD_MAX_OUTPUT pile up, or
 * whose socket broke, is closed from the event loop (never under the caller's feet). */
void conn_send(struct conn *c, char *line)
{
        if (!line) {
                log_warning("out of memory formatting a reply to pid %d", (int)c->cred.pid);
                return;
        }
        size_t len = strlen(line);
        int r = -EMSGSIZE;
        if (!c->is_dying && c->out_len + len <= RIGD_MAX_OUTPUT) {
                char *out = realloc(c->out, c->out_len + len);
                r = out ? 0 : -ENOMEM;
                if (out) {
                        memcpy(out + c->out_len, line, len);
                        c->out = out;
                        c->out_len += len;
                        r = conn_flush(c);
                }
        }
        free(line);
        if (r < 0 && !c->is_dying) {
                log_warning_errno(r, "dropping the connection of pid %d uid %u", (int)c->cred.pid, c->cred.uid);
                shutdown(c->fd, SHUT_RDWR);
                sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
                sd_event_add_defer(c->rigd->event, &c->close_later, on_close_later, c);
                c->is_dying = true;
        }
}

void conn_send_error(struct conn *c, struct json_object *id, int negative_errno, const char *fmt, ...)
{
        char message[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        conn_send(c, proto_format_error(id, proto_errno_name(negative_errno), "%s", message));
}

void server_broadcast(struct rigd *d, enum proto_event_kind kind, struct json_object *fields)
{
        for (struct conn *c = d->conns; c; c = c->next)
                if (c->events & kind)
                        conn_send(c, proto_format_event(kind, json_object_get(fields)));
        json_object_put(fields);
}

static void conn_close(struct conn *c)
{
        struct rigd *d = c->rigd;
        for (struct conn **p = &d->conns; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        bool has_ended_leases = requests_conn_closed(c);
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->close_later);
        close(c->fd);
        free(c->reader);
        free(c->out);
        free(c);
        if (has_ended_leases)
                requests_schedule(d);
}

static int on_conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct conn *c = userdata;
        if (revents & EPOLLOUT && conn_flush(c) < 0) {
                conn_close(c);
                return 0;
        }
        if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return 0;

        size_t space;
        char *buf = proto_reader_space(c->reader, &space);
        ssize_t n = recv(fd, buf, space, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                conn_close(c);
                return 0;
        }
        proto_reader_commit(c->reader, (size_t)n);
        for (;;) {
                char *line;
                size_t len;
                int r = proto_reader_next(c->reader, &line, &len);
                if (r == 0 || c->is_dying)
                        break;
                if (r < 0)
                        conn_send_error(c, NULL, r, "message longer than %d bytes; it was dropped", PROTO_MAX_LINE - 1);
                else
                        requests_handle_line(c, line, len);
        }
        return 0;
}

static bool has_group(const struct conn *c, gid_t gid)
{
        if (gid == (gid_t)-1)
                return false;
        if (c->cred.gid == gid)
                return true;
        for (size_t i = 0; i < c->n_groups; i++)
                if (c->groups[i] == gid)
                        return true;
        return false;
}

static void read_peer(struct conn *c)
{
        socklen_t len = sizeof(c->cred);
        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) < 0) {
                log_warning_errno(errno, "SO_PEERCRED; the peer gets read access only");
                c->cred.uid = (uid_t)-1;
                c->cred.gid = (gid_t)-1;
                c->cred.pid = 0;
        }
        len = sizeof(c->groups);
        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &len) == 0)
                c->n_groups = len / sizeof(gid_t);
        else
                log_debug_errno(errno, "SO_PEERGROUPS of pid %d; only its primary group counts", (int)c->cred.pid);
        struct rigd *d = c->rigd;
        c->is_admin = c->cred.uid == 0 || has_group(c, d->admin_gid);
        c->may_lease = c->is_admin || has_group(c, d->lease_gid);
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct rigd *d = userdata;
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        log_warning_errno(errno, "accepting a connection");
                return 0;
        }
        struct conn *c = calloc(1, sizeof(*c));
        if (c)
                c->reader = calloc(1, sizeof(*c->reader));
        if (!c || !c->reader) {
                log_warning("out of memory accepting a connection");
                if (c)
                        free(c);
                close(cfd);
                return 0;
        }
        c->rigd = d;
        c->fd = cfd;
        read_peer(c);
        int r = sd_event_add_io(d->event, &c->io, cfd, EPOLLIN, on_conn_io, c);
        if (r < 0) {
                log_warning_errno(r, "watching a connection");
                close(cfd);
                free(c->reader);
                free(c);
                return 0;
        }
        c->next = d->conns;
        d->conns = c;
        log_debug("connection from pid %d uid %u (lease: %s, admin: %s)", (int)c->cred.pid, c->cred.uid,
                  c->may_lease ? "yes" : "no", c->is_admin ? "yes" : "no");
        return 0;
}

/* A socket file left by a rigd that died: nothing listens on it any more. */
static bool is_stale_socket(const struct sockaddr_un *addr)
{
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return false;
        bool is_stale = connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0 && errno == ECONNREFUSED;
        close(fd);
        return is_stale;
}

/* The directory (/run/rigd) when systemd did not make it: only its last level. */
static int make_socket_dir(const char *socket_path)
{
        char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
        strscpy(dir, socket_path, sizeof(dir));
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return 0;
        *slash = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return log_error_errno(errno, "creating %s", dir);
        return 0;
}

/* Binds and listens under a temporary name, then renames it into place: a client that sees the
 * socket file can connect at once (between bind and listen it would be refused). */
static int bind_socket(struct rigd *d)
{
        struct sockaddr_un addr = { .sun_family = AF_UNIX }, tmp = { .sun_family = AF_UNIX };
        if (!strscpy(addr.sun_path, d->socket_path, sizeof(addr.sun_path)) ||
            snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.new", d->socket_path) >= (int)sizeof(tmp.sun_path))
                return log_error_errno(ENAMETOOLONG, "socket path %s", d->socket_path);
        int r = make_socket_dir(d->socket_path);
        if (r < 0)
                return r;
        if (access(addr.sun_path, F_OK) == 0 && !is_stale_socket(&addr))
                return log_error_errno(EADDRINUSE, "%s: another rigd is serving it (or it is not a socket)",
                                       d->socket_path);

        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(errno, "socket");
        unlink(tmp.sun_path);
        /* Group render may connect (DESIGN §4.3); the rights are decided per request. */
        mode_t old = umask(0117);
        r = bind(fd, (const struct sockaddr *)&tmp, sizeof(tmp)) < 0 ? -errno : 0;
        umask(old);
        if (r == 0 && d->lease_gid != (gid_t)-1 && geteuid() == 0 && chown(tmp.sun_path, 0, d->lease_gid) < 0)
                log_warning_errno(errno, "giving %s to group %s", d->socket_path, d->config.lease_group);
        if (r == 0 && listen(fd, SOMAXCONN) < 0)
                r = -errno;
        if (r == 0 && rename(tmp.sun_path, addr.sun_path) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp.sun_path);
                close(fd);
                return log_error_errno(r, "binding %s", d->socket_path);
        }
        d->listen_fd = fd;
        d->is_socket_ours = true;
        return 0;
}

int server_listen(struct rigd *d)
{
        int n = sd_listen_fds(1);
        if (n < 0)
                return log_error_errno(n, "reading the sockets systemd passed");
        if (n > 1)
                return log_error_errno(EINVAL, "systemd passed %d sockets; rigd.socket has one", n);
        if (n == 1) {
                d->listen_fd = SD_LISTEN_FDS_START;
                if (sd_is_socket_unix(d->listen_fd, SOCK_STREAM, 1, NULL, 0) <= 0)
                        return log_error_errno(EINVAL, "the socket systemd passed is not a listening Unix stream socket");
                fcntl(d->listen_fd, F_SETFL, fcntl(d->listen_fd, F_GETFL) | O_NONBLOCK);
                log_info("serving the socket systemd passed");
        } else {
                int r = bind_socket(d);
                if (r < 0)
                        return r;
                log_info("serving %s", d->socket_path);
        }
        return sd_event_add_io(d->event, &d->listen_source, d->listen_fd, EPOLLIN, on_accept, d);
}

void server_close(struct rigd *d)
{
        while (d->conns)
                conn_close(d->conns);
        d->listen_source = sd_event_source_disable_unref(d->listen_source);
        if (d->listen_fd >= 0)
                close(d->listen_fd);
        if (d->is_socket_ours)
                unlink(d->socket_path);
        d->listen_fd = -1;
}
