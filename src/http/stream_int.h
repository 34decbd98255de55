/*
 * stream_int.h
 *	  What the subscribers' side (stream.c) and the feed thread
 *	  (stream_feed.c) share: one live event, and the calls the feed makes.
 */
#ifndef VN_HTTP_STREAM_INT_H
#define VN_HTTP_STREAM_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

#include "buf.h"

#define VN_STREAM_MAX_ITEMS 64 /* patterns, aggregate types or ids in a filter */
#define VN_STREAM_ITEM_LEN 120 /* characters of one */

typedef enum VnStreamState
{
	VN_STREAM_HOLDING, /* live events wait in held while the gap is read */
	VN_STREAM_LIVE,
	VN_STREAM_CUT /* out ends with the reason; nothing more is added */
} VnStreamState;

typedef struct VnHeld
{
	long long	   seq;
	char		  *frame;
	size_t		   len;
	struct VnHeld *next;
} VnHeld;

typedef struct VnStream VnStream;

/* one subscription (stream.c explains the locking) */
struct VnStream
{
	pthread_mutex_t lock;
	/* set before the subscription is in the hub, read-only after */
	char  tenant[130];
	char *visible[VN_STREAM_MAX_ITEMS * 4]; /* aggregate types the role may read */
	int	  nvisible;
	char *patterns[VN_STREAM_MAX_ITEMS]; /* ?types= */
	int	  npatterns;
	char *agg_types[VN_STREAM_MAX_ITEMS]; /* ?aggregate_type= */
	int	  nagg_types;
	char *agg_ids[VN_STREAM_MAX_ITEMS]; /* ?aggregate_id= */
	int	  nagg_ids;
	/* under lock */
	struct MHD_Connection *con;
	int					   wake_fd; /* the eventfd of the connection's loop */
	VnStreamState		   state;
	bool				   suspended; /* by reader(): resume when data comes */
	bool				   dead;	  /* the answer is over: the feed frees it */
	VnBuf				   out;		  /* bytes to send, from pos */
	size_t				   pos;
	VnHeld				  *held; /* newest first, while HOLDING */
	size_t				   held_bytes;
	long long			  *gap; /* sorted seqs written from the gap */
	int					   ngap;
	long long			   last_write_ms;
	size_t				   bound; /* bytes out may hold: the buffer, and the gap */
	/* /events/ws (stream_ws.c): out holds WebSocket frames, written by a task */
	bool							  ws;
	char							  ws_accept[64]; /* Sec-WebSocket-Accept */
	int								  ws_fd;		 /* eventfd the writer waits on */
	int								  ws_sock;
	struct MHD_UpgradeResponseHandle *ws_urh;
};


/* one event of the feed; strings NUL-terminated, body not necessarily */
typedef struct VnStreamEvent
{
	long long	seq;	  /* the outbox seq: what a gap's copy is recognised by */
	long long	position; /* the publish position, the SSE id (-1: none) */
	const char *type;
	const char *tenant;
	const char *aggregate_type;
	const char *aggregate_id;
	const char *body; /* the CloudEvents envelope */
	size_t		body_len;
} VnStreamEvent;

typedef enum VnFeedState
{
	VN_FEED_OFF,		  /* no broker configured */
	VN_FEED_DISCONNECTED, /* configured, not consuming (yet, or any more) */
	VN_FEED_CONNECTED
} VnFeedState;

/* in stream_feed.c */
extern bool		   vn_stream_feed_start(const char *url, char **error);
extern VnFeedState vn_stream_feed_state(void);

/* in stream.c, called by the feed thread only */
extern void vn_stream_dispatch(const VnStreamEvent *ev);
/* heartbeats due at now_ms, and frees the subscriptions whose connection ended */
extern void vn_stream_tick(long long now_ms);
/* in stream_ws.c */
extern bool			   vn_stream_ws_accept(const char *headers_json, char *accept, size_t len);
extern void			   vn_stream_ws_message(VnBuf *b, long long position, const char *type, const char *body, size_t len);
extern void			   vn_stream_ws_closed(VnBuf *b, const char *reason, const char *message);
extern void			   vn_stream_ws_ping(VnBuf *b);
extern void			   vn_stream_ws_wake(VnStream *s);
extern enum MHD_Result vn_stream_ws_queue(struct MHD_Connection *con, VnStream *s);
extern void			   vn_stream_ws_reap(void);

/* in stream.c, for stream_ws.c */
extern void vn_stream_release(void *cls);

/* marks the calling thread as the feed thread */
extern void vn_stream_feed_thread(void);
/* every subscriber is cut (the feed lost events: they must resume) */
extern void vn_stream_cut_all(const char *reason, const char *message);

#endif
