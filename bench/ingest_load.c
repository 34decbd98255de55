/*
 * ingest_load.c
 *	  The load generator of bench/ingest: the same WAHA message.any payloads
 *	  (channels.md §1.3), either POSTed to ventros-http's webhook endpoint,
 *	  signed as WAHA signs them (X-Webhook-Hmac: hex HMAC-SHA512), or
 *	  INSERTed into a plain table over libpq (the floor).
 *
 *	  ingest_load http <host> <port> <path> <hmac key> <n> <clients> <run id> <contacts> [<rate>]
 *	  ingest_load pg <conninfo> <n> <clients> <run id> <contacts>
 *
 * Each of <clients> threads keeps one connection (HTTP/1.1 keep-alive, or a
 * libpq session) and sends messages i = t, t + clients, ... one at a time.
 * Message i is unique per <run id> and comes from one of <contacts> senders.
 * Prints one line: "<n/s> <p50 ms> <p99 ms> <ok> <failed> <seconds>", where
 * ok counts 200 answers with "accepted" (http) or committed INSERTs (pg);
 * a request is timed from its first byte sent to its answer read, the rate
 * from the first request sent to the last answer read.  With <rate> (http,
 * messages per second over all clients), message i is sent no earlier than
 * i / rate seconds after the start: the answers' latency at a given load.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

typedef struct Job
{
	int t;
	/* out */
	double *lat_ms;
	long	nlat;
	long	ok;
	long	failed;
	char	error[256];
} Job;

static const char *mode;
static const char *host;
static int		   port;
static const char *path;
static const char *key;
static const char *conninfo;
static long		   n;
static int		   clients;
static const char *run_id;
static long		   contacts;
static double	   rate; /* messages/s over all clients; 0: as fast as answered */
static double	   start_ms;

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* message i as WAHA sends it (GOWS engine), about 900 bytes */
static int
payload(long i, char *buf, size_t size, char *dedupe, size_t dsize)
{
	long who = i % contacts;
	long ts = 1759425214 + i;
	int	 len;

	snprintf(dedupe, dsize, "false_55119%08ld@c.us_%s%012lX", who, run_id, i);
	len = snprintf(buf, size,
				   "{\"id\":\"evt_%s%012lx\",\"timestamp\":%ld101,\"event\":\"message.any\",\"session\":\"bench\","
				   "\"me\":{\"id\":\"5511988887777@c.us\",\"pushName\":\"Acme Sales\"},"
				   "\"payload\":{\"id\":\"%s\",\"timestamp\":%ld,\"from\":\"55119%08ld@c.us\",\"fromMe\":false,"
				   "\"source\":\"app\",\"to\":\"5511988887777@c.us\",\"participant\":null,"
				   "\"body\":\"Ol\xc3\xa1! Queria mais informa\xc3\xa7\xc3\xb5"
				   "es, por favor. Pedido %ld.\",\"hasMedia\":false,"
				   "\"media\":null,\"ack\":2,\"ackName\":\"DEVICE\",\"replyTo\":null,"
				   "\"_data\":{\"Info\":{\"Chat\":\"55119%08ld@s.whatsapp.net\",\"Sender\":\"55119%08ld@s.whatsapp.net\","
				   "\"IsGroup\":false,\"ID\":\"%s%012lX\",\"Type\":\"text\",\"PushName\":\"Cliente %ld\"},"
				   "\"Message\":{\"conversation\":\"Ol\xc3\xa1! Queria mais informa\xc3\xa7\xc3\xb5"
				   "es, por favor. Pedido %ld.\"}}},"
				   "\"engine\":\"GOWS\",\"environment\":{\"version\":\"2025.9.5\",\"engine\":\"GOWS\",\"tier\":\"PLUS\",\"browser\":null}}",
				   run_id, i, ts, dedupe, ts, who, i, who, who, run_id, i, who, i);
	return len;
}

static int
dial(void)
{
	struct sockaddr_in a;
	int				   fd = socket(AF_INET, SOCK_STREAM, 0);
	int				   one = 1;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t) port);
	inet_pton(AF_INET, host, &a.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *) &a, sizeof(a)) != 0)
	{
		if (fd >= 0)
			close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static bool
write_all(int fd, const char *p, size_t len)
{
	while (len > 0)
	{
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		len -= (size_t) w;
	}
	return true;
}

/* reads one answer: status, whether the body says "accepted", and whether the server closes */
static bool
read_answer(int fd, int *status, bool *accepted, bool *closing)
{
	char   buf[8192];
	size_t have = 0;
	char  *end = NULL;
	long   clen = 0;

	while (end == NULL)
	{
		ssize_t r;

		if (have >= sizeof(buf) - 1)
			return false;
		r = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		have += (size_t) r;
		buf[have] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	*status = atoi(buf + 9);
	{
		char *cl = strcasestr(buf, "\r\nContent-Length:");

		if (cl && cl < end)
			clen = atol(cl + 17);
		*closing = strcasestr(buf, "\r\nConnection: close") != NULL;
	}
	end += 4;
	while ((long) (have - (size_t) (end - buf)) < clen)
	{
		ssize_t r;

		if (have >= sizeof(buf) - 1)
			return false;
		r = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (r <= 0)
			return false;
		have += (size_t) r;
		buf[have] = '\0';
	}
	*accepted = strstr(end, "\"accepted\"") != NULL;
	return true;
}

static void *
http_worker(void *arg)
{
	Job			 *job = arg;
	int			  fd = dial();
	char		  body[4096];
	char		  dedupe[128];
	char		  head[1024];
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int  maclen;
	char		  hex[EVP_MAX_MD_SIZE * 2 + 1];

	for (long i = job->t; i < n; i += clients)
	{
		int	 blen = payload(i, body, sizeof(body), dedupe, sizeof(dedupe));
		int	 hlen;
		int	 status = 0;
		bool accepted = false,
			 closing = false;
		double t0;

		if (rate > 0)
		{
			double wait = start_ms + i * 1000.0 / rate - now_ms();

			if (wait > 0)
				usleep((useconds_t) (wait * 1000));
		}
		HMAC(EVP_sha512(), key, (int) strlen(key), (unsigned char *) body, (size_t) blen, mac, &maclen);
		for (unsigned int k = 0; k < maclen; k++)
			sprintf(hex + 2 * k, "%02x", mac[k]);
		hlen = snprintf(head, sizeof(head),
						"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
						"User-Agent: WAHA/2025.9.5\r\nX-Webhook-Request-Id: %s-%ld\r\nX-Webhook-Timestamp: %ld\r\n"
						"X-Webhook-Hmac: %s\r\nX-Webhook-Hmac-Algorithm: sha512\r\nContent-Length: %d\r\n\r\n",
						path, host, port, run_id, i, (long) time(NULL) * 1000, hex, blen);
		t0 = now_ms();
		if (fd < 0 || !write_all(fd, head, (size_t) hlen) || !write_all(fd, body, (size_t) blen) ||
			!read_answer(fd, &status, &accepted, &closing))
		{
			snprintf(job->error, sizeof(job->error), "connection failed at message %ld", i);
			job->failed++;
			if (fd >= 0)
				close(fd);
			fd = dial();
			continue;
		}
		job->lat_ms[job->nlat++] = now_ms() - t0;
		if (status == 200 && accepted)
			job->ok++;
		else
		{
			job->failed++;
			snprintf(job->error, sizeof(job->error), "status %d at message %ld", status, i);
		}
		if (closing)
		{
			close(fd);
			fd = dial();
		}
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void *
pg_worker(void *arg)
{
	Job	   *job = arg;
	PGconn *conn = PQconnectdb(conninfo);
	char	body[4096];
	char	dedupe[128];

	if (PQstatus(conn) != CONNECTION_OK)
	{
		snprintf(job->error, sizeof(job->error), "%s", PQerrorMessage(conn));
		job->failed = n;
		PQfinish(conn);
		return NULL;
	}
	for (long i = job->t; i < n; i += clients)
	{
		const char *values[2];
		PGresult   *res;
		double		t0;

		payload(i, body, sizeof(body), dedupe, sizeof(dedupe));
		values[0] = dedupe;
		values[1] = body;
		t0 = now_ms();
		res = PQexecParams(conn, "INSERT INTO bench_floor (dedupe_key, body) VALUES ($1, $2)", 2, NULL, values,
						   NULL, NULL, 0);
		job->lat_ms[job->nlat++] = now_ms() - t0;
		if (PQresultStatus(res) == PGRES_COMMAND_OK)
			job->ok++;
		else
		{
			job->failed++;
			snprintf(job->error, sizeof(job->error), "%s", PQerrorMessage(conn));
		}
		PQclear(res);
	}
	PQfinish(conn);
	return NULL;
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *) a,
		   y = *(const double *) b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	pthread_t *threads;
	Job		  *jobs;
	double	  *all;
	long	   nall = 0,
		 ok = 0,
		 failed = 0;
	double t0,
		secs;
	bool http;

	if (argc < 2)
		goto usage;
	mode = argv[1];
	http = strcmp(mode, "http") == 0;
	if (http && (argc == 10 || argc == 11))
	{
		host = argv[2];
		port = atoi(argv[3]);
		path = argv[4];
		key = argv[5];
		n = atol(argv[6]);
		clients = atoi(argv[7]);
		run_id = argv[8];
		contacts = atol(argv[9]);
		rate = argc == 11 ? atof(argv[10]) : 0;
	}
	else if (strcmp(mode, "pg") == 0 && argc == 7)
	{
		conninfo = argv[2];
		n = atol(argv[3]);
		clients = atoi(argv[4]);
		run_id = argv[5];
		contacts = atol(argv[6]);
	}
	else
		goto usage;
	if (n <= 0 || clients <= 0 || contacts <= 0 || strlen(run_id) > 8)
		goto usage;

	threads = calloc((size_t) clients, sizeof(pthread_t));
	jobs = calloc((size_t) clients, sizeof(Job));
	for (int t = 0; t < clients; t++)
	{
		jobs[t].t = t;
		jobs[t].lat_ms = calloc((size_t) (n / clients + 2), sizeof(double));
	}
	t0 = start_ms = now_ms();
	for (int t = 0; t < clients; t++)
		pthread_create(&threads[t], NULL, http ? http_worker : pg_worker, &jobs[t]);
	for (int t = 0; t < clients; t++)
		pthread_join(threads[t], NULL);
	secs = (now_ms() - t0) / 1000.0;

	all = calloc((size_t) n + 1, sizeof(double));
	for (int t = 0; t < clients; t++)
	{
		memcpy(all + nall, jobs[t].lat_ms, sizeof(double) * (size_t) jobs[t].nlat);
		nall += jobs[t].nlat;
		ok += jobs[t].ok;
		failed += jobs[t].failed;
		if (jobs[t].error[0])
			fprintf(stderr, "ingest_load: client %d: %s\n", t, jobs[t].error);
	}
	qsort(all, (size_t) nall, sizeof(double), cmp);
	printf("%.0f %.2f %.2f %ld %ld %.2f\n", ok / secs, nall ? all[nall / 2] : 0.0,
		   nall ? all[(long) (nall * 0.99)] : 0.0, ok, failed, secs);
	return failed > 0 ? 1 : 0;

usage:
	fprintf(stderr, "usage: ingest_load http <host> <port> <path> <hmac key> <n> <clients> <run id (<= 8 chars)> <contacts> [<rate>]\n"
					"       ingest_load pg <conninfo> <n> <clients> <run id> <contacts>\n");
	return 2;
}
