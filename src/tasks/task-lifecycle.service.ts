// CONTRACT STUB — the lead replaces this file; the API layer calls only these two methods.
import { Injectable } from '@nestjs/common';

@Injectable()
export class TaskLifecycleService {
  /** Tells the dispatcher a task was stored QUEUED. */
  taskCreated(id: string): void {
    void id;
  }

  /**
   * Cancels a task: NOT_FOUND DomainError if unknown; no-op if terminal; otherwise the task ends CANCELED
   * and its containers are removed in the background.
   */
  async cancel(id: string): Promise<void> {
    void id;
  }
}
