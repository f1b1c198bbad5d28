(* xenopsd's side of a build: see the interface for the xenopsd code each part follows. *)

exception Domain_builder_error of string * int * string
exception Xenctrl_dom_allocate_failure of int * string
exception Xenctrl_dom_linux_build_failure of int * string
exception Xenctrl_domain_save_failure of int * string
exception Xenctrl_domain_resume_failure of int * string
exception Xenctrl_domain_restore_failure of int * string
exception Domain_build_failed

let raise_of_error text =
  match String.split_on_char ' ' text with
  | word :: code :: rest -> (
      let c () = int_of_string code and m = String.concat " " rest in
      match word with
      | "hvm_build" | "hvm_build_params" | "hvm_build_mem" ->
          raise (Domain_builder_error (word, c (), m))
      | "xc_dom_allocate" -> raise (Xenctrl_dom_allocate_failure (c (), m))
      | "xc_dom_linux_build" -> raise (Xenctrl_dom_linux_build_failure (c (), m))
      | "xc_domain_save" -> raise (Xenctrl_domain_save_failure (c (), m))
      | "xc_domain_resume" -> raise (Xenctrl_domain_resume_failure (c (), m))
      | "xc_domain_restore" -> raise (Xenctrl_domain_restore_failure (c (), m))
      | _ -> failwith ("Error from xenguesthelper: " ^ text))
  | _ -> failwith ("Error from xenguesthelper: " ^ text)

let build_in_process ?(log = ignore) ?cancel handle argv =
  match Xenguest.build_of_argv ?cancel ~log:(fun _ text -> log text) handle argv with
  | r, _ -> (r.Xenguest.store_mfn, r.Xenguest.console_mfn)
  | exception Xenguest.Error { message; _ } -> raise_of_error message

(* The two frames of a result: line, as Domain.xenguest reads them. *)
let frames_of_result line =
  match String.split_on_char ' ' line with
  | store :: console :: _ -> (Nativeint.of_string store, Nativeint.of_string console)
  | _ -> raise Domain_build_failed

(* One control line, classified as XenguestHelper.message_of_string does. *)
type line = Log of string | Result of string | Error of string | Suspend

let classify line =
  match String.index_opt line ':' with
  | None -> failwith (Printf.sprintf "Failed to parse message from xenguesthelper [%s]" line)
  | Some i -> (
      let rest = String.sub line (i + 1) (String.length line - i - 1) in
      match String.sub line 0 i with
      | "stdout" | "stderr" | "info" -> Log rest
      | "result" -> Result rest
      | "error" -> Error rest
      | "suspend" -> Suspend
      | _ -> Error "uncaught exception")

(* On Unix a file descriptor is its number (otherlibs/unix/unix.ml: type file_descr = int). *)
let fd_number : Unix.file_descr -> int = Obj.magic

let exec ?(log = ignore) path argv =
  (* Close-on-exec everywhere, so that a fork in another thread inherits none of them; the
     child clears the flag on its two ends only. *)
  let out_r, out_w = Unix.pipe ~cloexec:true () in
  let in_r, in_w = Unix.pipe ~cloexec:true () in
  let null = Unix.openfile "/dev/null" [ Unix.O_RDWR; Unix.O_CLOEXEC ] 0 in
  let args =
    Array.of_list
      (path :: "-controloutfd" :: string_of_int (fd_number out_w) :: "-controlinfd"
     :: string_of_int (fd_number in_r) :: argv)
  in
  let pid =
    match Unix.fork () with
    | 0 -> (
        try
          Unix.clear_close_on_exec out_w;
          Unix.clear_close_on_exec in_r;
          List.iter (Unix.dup2 ~cloexec:false null) [ Unix.stdin; Unix.stdout; Unix.stderr ];
          Unix.execv path args
        with _ -> Unix._exit 127)
    | pid -> pid
    | exception e ->
        List.iter Unix.close [ out_r; out_w; in_r; in_w; null ];
        raise e
  in
  List.iter Unix.close [ out_w; in_r; null ];
  let ic = Unix.in_channel_of_descr out_r in
  let rec next () =
    match classify (input_line ic) with
    | Log text ->
        log text;
        next ()
    | Result line -> frames_of_result line
    | Error text -> raise_of_error text
    | Suspend -> failwith "xenguesthelper protocol failure; not expecting Suspend"
  in
  Fun.protect next ~finally:(fun () ->
      close_in_noerr ic;
      (try Unix.close in_w with Unix.Unix_error _ -> ());
      let rec reap () =
        match Unix.waitpid [] pid with
        | _ -> ()
        | exception Unix.Unix_error (Unix.EINTR, _, _) -> reap ()
        | exception Unix.Unix_error _ -> ()
      in
      reap ())

let build ?xenguest ?log ?cancel handle argv =
  match xenguest with
  | None -> build_in_process ?log ?cancel handle argv
  | Some path -> exec ?log path argv
