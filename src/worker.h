/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The worker kit: the skeleton every Ventros background worker uses
 *	  (registration, shared slot, attach, loop, transaction step, install
 *	  check, status).  See worker.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_WORKER_H
#define VENTROS_WORKER_H

#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "storage/latch.h"
#include "storage/spin.h"

#include "shmem.h"

#define VN_WORKER_ERRLEN 512

/*
 * The common head of a worker's shared slot: each kind's own slot struct
 * embeds it as its first member.  Every field is protected by the kind's
 * spinlock.  dbid and database stay after the worker exits (the status
 * functions still name the database); pid and latch are cleared.
 */
typedef struct VnWorkerSlot
{
	pid_t		pid; /* 0 when no worker runs */
	Latch	   *latch;
	Oid			dbid; /* InvalidOid until the worker connected */
	char		database[NAMEDATALEN];
	TimestampTz started_at; /* when the worker connected to it */
	TimestampTz last_error_at;
	char		last_error[VN_WORKER_ERRLEN];
} VnWorkerSlot;

/* A kind's shared segment: the slots follow the spinlock. */
typedef struct VnWorkerShared
{
	slock_t mutex;
	/* nslots of slot_size bytes; aligned, as each starts a VnWorkerSlot */
	char slots[FLEXIBLE_ARRAY_MEMBER] pg_attribute_aligned(MAXIMUM_ALIGNOF);
} VnWorkerShared;

/*
 * One kind of worker, a static struct in its file: the fields up to
 * old_databases_list are declared there, the rest is filled by the kit.
 * The workers of a kind serve the databases of ventros.databases,
 * per_database workers each; old_databases names the kind's setting of
 * 0.1.0 that named its database(s), still read (deprecated) when set.
 */
typedef struct VnWorkerKind
{
	const char	   *type;				 /* bgw_type, application_name, log prefix */
	const char	   *main;				 /* the worker's main function (bgw_function_name) */
	Size			slot_size;			 /* sizeof its slot struct (VnWorkerSlot first) */
	bool			drain_on_sigterm;	 /* SIGTERM sets ShutdownRequestPending, not die */
	const char	   *old_databases;		 /* e.g. "ventros.http_database"; NULL: none */
	bool			old_databases_list;	 /* that setting is a list (else one name) */
	char		   *old_databases_value; /* its value; NULL when not set */
	int				per_database;
	int				ndatabases;
	char		  **databases; /* postmaster: the databases served, in slot order */
	int				nslots;	   /* ndatabases * per_database */
	VnWorkerShared *shared;	   /* NULL unless preloaded */
} VnWorkerKind;

/* in worker.c: in _PG_init */
extern void vn_worker_init(void);
extern bool vn_worker_preloading(void);
extern int	vn_worker_define(VnWorkerKind *kind, int per_database, VnFindLatch find_latch);

/* in worker.c: in any process */
extern VnWorkerSlot *vn_worker_slot(VnWorkerKind *kind, int slot);
extern void			 vn_worker_lock(VnWorkerKind *kind);
extern void			 vn_worker_unlock(VnWorkerKind *kind);
extern int			 vn_worker_copy_slot(VnWorkerKind *kind, int slot, Oid dbid, void *copy);
extern Latch		*vn_worker_find_latch(VnWorkerKind *kind, int from, Oid dbid);
extern bool			 vn_worker_database_state(VnWorkerKind *kind, FunctionCallInfo fcinfo, TupleDesc *desc, void *copy);

/* in worker.c: in the worker */
extern VnWorkerSlot *vn_worker_attach(VnWorkerKind *kind, Datum main_arg);
extern bool			 vn_worker_loop_top(void);
extern int			 vn_worker_wait(long timeout_ms, pgsocket sock);
extern MemoryContext vn_worker_begin(const char *activity);
extern void			 vn_worker_end(MemoryContext caller);
extern void			 vn_worker_flush_wal(void);
extern const char	*vn_worker_missing_function(const char *const *signatures, int n);
extern void			 vn_worker_set_error(const char *msg);
extern void			 vn_worker_note_error(VnWorkerSlot *slot, const char *msg, TimestampTz at);

#endif /* VENTROS_WORKER_H */
