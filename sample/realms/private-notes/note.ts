// A module of the private realm (it has a .private file): cached once per user, never shared.
export type NoteId = string;

export interface Note {
  id: NoteId;
  title: string;
  body: string;
}

export function summarize(note: Note): string {
  return note.body.length > 40 ? `${note.title}: ${note.body.slice(0, 40)}…` : `${note.title}: ${note.body}`;
}
