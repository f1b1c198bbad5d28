(** A simulated Xen host, for tests without Xen: the same builds as {!Xenguest} run against
    a model of the hypervisor (NUMA nodes, buddy allocator, claims, PoD) and an in-memory
    xenstore. Test-only: this library is not installed with [xenguest].

    Failures raise {!Xenguest.Error}, with the binary's text. *)

type t

val create : spec:string -> t
(** A host from a spec such as ["nodes=2,node_mib=65536,no_1g=1"] (see the README).
    @raise Xenguest.Error naming the bad key. *)

val handle : t -> Xenguest.handle
(** The handle to build with. *)

val create_domain : t -> ?hvm:bool -> ?vcpus:int -> max_mem_kib:int -> unit -> Xenguest.domid
(** The toolstack's part: an empty domain (HVM container by default) with [max_pages]
    from [max_mem_kib]. *)

val destroy_domain : t -> Xenguest.domid -> unit
(** Return every page of the domain to the host and drop its xenstore keys. *)

val write : t -> string -> string -> unit
(** Write a xenstore key (absolute path). *)

val read : t -> string -> string option
(** Read a xenstore key (absolute path). *)

(** What the host holds for one domain. *)
type domain = {
  tot_pages : int;
  max_pages : int;
  pages_by_order : (int * int) list;
  pages_by_node : int list;
  pod_entries : int;
  repopulated_pages : int;  (** gfns populated twice: 0 for a correct build *)
}

val domain : t -> Xenguest.domid -> domain

val free_pages : t -> int
(** Free pages on the host. *)

val outstanding_claims : t -> int

val check_accounting : t -> (unit, string) result
(** Every page is free or owned by exactly one domain, and the counters agree. *)

(** {2 Fault injection}

    For tests of the error paths: each armed fault fires once. *)

val inject_fault : t -> call:string -> ?nth:int -> ?domid:Xenguest.domid -> errno:int -> unit -> unit
(** Make the [nth] (default 1st) coming hypervisor call of kind [call] (the simulated
    host's name for it, e.g. ["domain_populate_physmap"], ["domain_claim_pages"],
    ["hvm_param_set"]), counting only calls for [domid] if given, fail with [errno] as
    the libxenctrl call would. A build then raises {!Xenguest.Error} with the binary's text.
    @raise Xenguest.Error for an unknown call kind or an [nth] below 1. *)

val fail_next_store : t -> op:string -> errno:int -> unit
(** Make the next xenstore operation [op] (["read"], ["write"], ["directory"] or
    ["rm"]) fail with [errno]. *)

val set_call_latency : t -> us:int -> unit
(** Make every hypervisor call from now on take at least [us] microseconds (0: none), as
    on a slow, loaded host; for tests of long builds, such as cancelling one. *)

val inject_panic : t -> op:string -> unit
(** Make the next xenstore operation [op] made by a build panic inside the Rust core
    (with the runtime lock released): the build raises {!Xenguest.Error} with step
    ["panic"] and the process carries on. Calls through {!read} and {!write} are not
    affected. *)
